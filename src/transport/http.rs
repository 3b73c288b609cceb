//! The firmware HTTP server: devices download the packages a rollout offers them from here.
//!
//! Owns: the listening socket and its accept loop (connection cap, header and write-stall
//! timeouts), the table of offered files keyed by unguessable tokens, and the byte counters per
//! package and per client. Must never: build a file path from the request URL (only
//! `/fw/{token}/{file_name}` of a registered offer is served, from the path registered with it),
//! list directories, or serve anything it was not explicitly offered.
//! A campaign's downloads are granted per device (`grant`): each target's own token (see
//! `download_token`), accepted only until the campaign's grant is revoked, and every request on
//! it counted and logged with the device it was issued to.
//!
//! Range, HEAD, ETag and Last-Modified come from tower-http's `ServeFile`; hyper is driven
//! directly (instead of `axum::serve`) because only that way a header-read timeout and
//! Title-Case header names (`Content-Length`, as embedded clients match it) can be set. Every
//! response carries an exact `Content-Length` (ServeFile sets it, hyper derives it from the
//! exact body size otherwise): never chunked, never compressed.
//! Files up to 64 MiB are served from an in-memory copy (`file_cache`): with 100 concurrent
//! downloads that took us from ~0.5-0.65× to ~0.95× nginx's sendfile throughput.
//!
//! Big fleets ([`ServerOptions`]): the connection cap is a setting (default
//! [`DEFAULT_MAX_CONNECTIONS`]); at start the process's open-file limit is raised towards what
//! the cap needs (`host::raise_open_file_limit`) and the cap is lowered, with a warning, when
//! the limit stays below. Memory stays bounded with thousands of slow clients: cached files are
//! one shared copy handed out as slices, and files streamed from disk are read in chunks that
//! shrink as connections grow (at most [`STREAM_BUFFER_BUDGET`] together). An optional cap on
//! bytes per second across all clients (`--max-bandwidth`, `shaping`) keeps a site's uplink
//! usable during a rollout.
//!
//! HTTPS is optional ([`FirmwareServer::start_with_tls`], e.g. with the site CA's certificate
//! from `access::tls`): the same port then speaks only TLS, the TLS handshake must finish
//! within the header timeout and counts against the same connection cap, and the announced
//! base URL is `https://`. A plain-HTTP request on that port is answered `400` with a sentence
//! saying so (as nginx does) and closed; it never reaches a file.

use crate::i18n::tr;
use imbl::OrdMap;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::response::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::file_cache::{Budget, CACHE_BUDGET_BYTES, CachedFile, DiskBody, SliceBody};
use super::shaping::{Bandwidth, ShapedBody, SharedPacer};
use crate::host::primary_lan_ip;

/// Simultaneous connections unless configured otherwise; further clients wait in the kernel's
/// accept backlog. A 100,000-device fleet downloads in waves of (typically) a few thousand;
/// 16,384 sockets take ~16k descriptors, which the usual hard limits allow.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// Connections the kernel completes and queues for us to accept (capped by `somaxconn`, 4,096 on
/// current Linux).
const ACCEPT_BACKLOG: u32 = 4096;
/// Descriptors left to the rest of the process (database, broker, MQTT link, log files) when the
/// open-file limit, not the setting, decides the connection cap.
const RESERVED_OPEN_FILES: u64 = 256;
/// Chunks read from disk and not yet written, all connections together, at most (beyond a floor
/// of [`MIN_STREAM_CHUNK`] each): a few connections read 1 MiB at a time, 10,000 far less.
pub const STREAM_BUFFER_BUDGET: usize = 64 * 1024 * 1024;
/// Bytes hyper may queue for writing (beyond the frame in hand) or read of a request head, per
/// connection (hyper's own floor is 8 KiB).
const MAX_CONNECTION_BUFFER: usize = 16 * 1024;
/// The smallest read per body frame when many connections stream from disk.
const MIN_STREAM_CHUNK: usize = 16 * 1024;
/// A client must send its complete request head within this time (also closes idle keep-alives).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that reads nothing for this long is disconnected, freeing its connection slot.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Read size per body frame: large frames keep syscalls and counter updates rare.
const CHUNK_BYTES: usize = 1024 * 1024;
/// Distinct client addresses counted separately; the rest are summed under 0.0.0.0.
const MAX_TRACKED_CLIENTS: usize = 100_000;
/// Most bytes of a plain-HTTP request head read on the HTTPS port before it is answered.
const PLAIN_HEAD_BYTES: usize = 8192;
/// The answer to plain HTTP on the HTTPS port.
const PLAIN_ON_TLS_BODY: &str = "This port serves HTTPS only: use the https:// URL.\n";

/// How much the server takes on at once; [`Default`] fits a large fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// Simultaneous connections at most (lowered at start if the open-file limit is lower).
    pub max_connections: usize,
    /// Bytes per second sent across all clients at most; `None`: as fast as the network goes.
    pub max_bandwidth: Option<Bandwidth>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_bandwidth: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{}", tr!("error.http.addr_in_use", addr = _0))]
    AddrInUse(SocketAddr),
    #[error("{}", tr!("error.http.bind", addr = addr, why = crate::i18n::io_error(cause)))]
    Bind { addr: SocketAddr, cause: io::Error },
    #[error("{}", tr!("error.http.public_base", url = format!("{_0:?}")))]
    PublicBase(String),
    #[error("{}", tr!("error.http.plain_base_with_tls", url = format!("{_0:?}")))]
    PlainBaseWithTls(String),
    #[error("{}", tr!("error.http.foreign_url", url = format!("{url:?}"), base = base, file = file))]
    ForeignUrl {
        url: String,
        base: String,
        file: String,
    },
}

/// Download counters since the server started.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServedStats {
    /// HTTP requests received (any path, any outcome).
    pub requests: u64,
    /// Connections open right now.
    pub active_connections: u64,
    /// Body bytes handed to the connections, all files together.
    pub total_bytes: u64,
    /// Body bytes per package key (sha256).
    pub bytes_by_package: BTreeMap<String, u64>,
    /// Body bytes per client IP address.
    pub bytes_by_client: BTreeMap<IpAddr, u64>,
    /// Body bytes per device, on the per-device links of campaigns (device id text). A
    /// persistent map: a snapshot of 100,000 devices shares it instead of copying it.
    pub bytes_by_device: OrdMap<String, u64>,
    /// Requests per device, on the per-device links of campaigns (device id text).
    pub requests_by_device: OrdMap<String, u64>,
}

/// One offered file.
struct Offer {
    path: PathBuf,
    file_name: String,
    bytes: Arc<AtomicU64>,
    cache: CachedFile,
}

struct Shared {
    offers: RwLock<HashMap<String, Arc<Offer>>>,
    grants: RwLock<HashMap<String, Arc<Granted>>>,
    by_device: Mutex<HashMap<String, Arc<DeviceCounters>>>,
    /// The per-device counters as [`FirmwareServer::stats`] last read them (lock it before
    /// `by_device`).
    device_maps: Mutex<DeviceMaps>,
    by_package: Mutex<HashMap<String, Arc<AtomicU64>>>,
    by_client: Mutex<HashMap<IpAddr, Arc<AtomicU64>>>,
    requests: AtomicU64,
    active: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    cache_budget: Arc<Budget>,
    /// Memory of the chunks read from disk and not yet written, all connections together.
    stream_budget: Arc<Budget>,
    /// The shared cap on bytes per second, when one is set.
    pacer: Option<Arc<SharedPacer>>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            offers: RwLock::default(),
            grants: RwLock::default(),
            by_device: Mutex::default(),
            device_maps: Mutex::default(),
            by_package: Mutex::default(),
            by_client: Mutex::default(),
            requests: AtomicU64::default(),
            active: Arc::default(),
            total: Arc::default(),
            cache_budget: Arc::new(Budget::new(CACHE_BUDGET_BYTES)),
            stream_budget: Arc::new(Budget::new(STREAM_BUFFER_BUDGET as u64)),
            pacer: None,
        }
    }
}

impl Shared {
    fn offer(&self, token: &str, file_name: &str) -> Option<Arc<Offer>> {
        let offers = self.offers.read().unwrap_or_else(PoisonError::into_inner);
        offers
            .get(token)
            .filter(|o| o.file_name == file_name)
            .cloned()
    }

    fn client_counter(&self, ip: IpAddr) -> Arc<AtomicU64> {
        let mut clients = self
            .by_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = if clients.len() >= MAX_TRACKED_CLIENTS && !clients.contains_key(&ip) {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            ip
        };
        clients.entry(key).or_default().clone()
    }
}

/// The running server. Dropping it stops accepting; transfers in progress finish.
pub struct FirmwareServer {
    local_addr: SocketAddr,
    public_base: String,
    shared: Arc<Shared>,
    max_connections: usize,
    accept_task: tokio::task::AbortHandle,
}

impl std::fmt::Debug for FirmwareServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirmwareServer")
            .field("local_addr", &self.local_addr)
            .field("public_base", &self.public_base)
            .finish_non_exhaustive()
    }
}

impl Drop for FirmwareServer {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl FirmwareServer {
    /// Binds `bind` (port 0 picks a free port) and starts serving. `public_base` is the
    /// `http://host:port` devices use to reach us; `None` derives it from the bound address.
    pub async fn start(
        bind: SocketAddr,
        public_base: Option<String>,
    ) -> Result<FirmwareServer, HttpError> {
        Self::start_with_tls(bind, public_base, None).await
    }

    /// [`FirmwareServer::start`], serving HTTPS with `tls` when given: the derived public base
    /// is then `https://…`, and a given one must be `https://` too.
    pub async fn start_with_tls(
        bind: SocketAddr,
        public_base: Option<String>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<FirmwareServer, HttpError> {
        Self::start_with_options(bind, public_base, tls, ServerOptions::default()).await
    }

    /// [`FirmwareServer::start_with_tls`] with a connection cap and bandwidth cap of choice.
    pub async fn start_with_options(
        bind: SocketAddr,
        public_base: Option<String>,
        tls: Option<Arc<rustls::ServerConfig>>,
        options: ServerOptions,
    ) -> Result<FirmwareServer, HttpError> {
        let public_base = public_base.map(checked_public_base).transpose()?;
        if let (Some(base), Some(_)) = (&public_base, &tls)
            && base.starts_with("http://")
        {
            return Err(HttpError::PlainBaseWithTls(base.clone()));
        }
        let listener = listen(bind).map_err(|source| {
            if source.kind() == io::ErrorKind::AddrInUse {
                HttpError::AddrInUse(bind)
            } else {
                HttpError::Bind {
                    addr: bind,
                    cause: source,
                }
            }
        })?;
        let local_addr = listener.local_addr().map_err(|source| HttpError::Bind {
            addr: bind,
            cause: source,
        })?;
        let public_base =
            public_base.unwrap_or_else(|| derived_public_base(local_addr, tls.is_some()));
        let max_connections = connection_cap_in_force(options.max_connections);
        let shared = Arc::new(Shared {
            pacer: options.max_bandwidth.map(SharedPacer::new),
            ..Shared::default()
        });
        let router = Router::new()
            .route("/fw/{token}/{file_name}", axum::routing::get(serve_offer))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .with_state(shared.clone());
        let tls = tls.map(TlsAcceptor::from);
        let accept_task = tokio::spawn(accept_loop(
            listener,
            router,
            shared.clone(),
            tls,
            max_connections,
        ))
        .abort_handle();
        let max_bandwidth = options
            .max_bandwidth
            .map_or_else(|| "none".to_owned(), |b| b.to_string());
        tracing::info!(%local_addr, %public_base, max_connections, %max_bandwidth,
            "firmware HTTP server listening");
        Ok(FirmwareServer {
            local_addr,
            public_base,
            shared,
            max_connections,
            accept_task,
        })
    }

    /// The connection cap in force: the configured one, or lower when the open-file limit is.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL put into offers, e.g. `http://192.168.1.20:8080` (no trailing slash).
    pub fn public_base(&self) -> String {
        self.public_base.clone()
    }

    /// Offers the immutable stored file at `file_path` as `file_name` under a fresh token and
    /// returns its full URL. Each call makes a new token; [`FirmwareServer::withdraw`] ends it.
    pub fn offer(&self, file_path: PathBuf, file_name: &str, package_key: &str) -> String {
        let url = OfferUrl::fresh(&self.public_base, file_name);
        self.register(url.token.clone(), file_path, file_name, package_key);
        url.to_string()
    }

    /// Serves a file again under a URL an earlier [`FirmwareServer::offer`] returned (e.g. after
    /// a restart, for devices that were already told the URL). The URL must carry this server's
    /// public base, a token and `file_name`.
    pub fn offer_at(
        &self,
        url: &str,
        file_path: PathBuf,
        file_name: &str,
        package_key: &str,
    ) -> Result<(), HttpError> {
        let token = self.token_in(url, file_name)?;
        self.register(token, file_path, file_name, package_key);
        Ok(())
    }

    /// The token of `url` when it is a `{public base}/fw/{token}/{file_name}` link of ours.
    fn token_in(&self, url: &str, file_name: &str) -> Result<String, HttpError> {
        let encoded_name = percent_encode_segment(file_name);
        OfferUrl::parse(url)
            .filter(|offer| offer.base == self.public_base && offer.file == encoded_name)
            .map(|offer| offer.token)
            .ok_or_else(|| HttpError::ForeignUrl {
                url: url.to_owned(),
                base: self.public_base.clone(),
                file: encoded_name,
            })
    }

    fn register(&self, token: String, file_path: PathBuf, file_name: &str, package_key: &str) {
        let offer = self.new_offer(file_path, file_name, package_key);
        self.shared
            .offers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, offer);
    }

    fn new_offer(&self, file_path: PathBuf, file_name: &str, package_key: &str) -> Arc<Offer> {
        let bytes = {
            let mut packages = self
                .shared
                .by_package
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            packages.entry(package_key.to_owned()).or_default().clone()
        };
        Arc::new(Offer {
            cache: CachedFile::new(file_path.clone(), self.shared.cache_budget.clone()),
            path: file_path,
            file_name: file_name.to_owned(),
            bytes,
        })
    }

    /// Stops serving an offer, given its URL or token. Downloads in progress finish.
    pub fn withdraw(&self, url_or_token: &str) {
        let token = token_of(url_or_token);
        self.shared
            .offers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&token);
    }

    pub fn stats(&self) -> ServedStats {
        let (bytes_by_device, requests_by_device) = self.device_maps();
        let s = &self.shared;
        ServedStats {
            requests: s.requests.load(Ordering::Relaxed),
            active_connections: s.active.load(Ordering::Relaxed),
            total_bytes: s.total.load(Ordering::Relaxed),
            bytes_by_package: snapshot(&s.by_package),
            bytes_by_client: snapshot(&s.by_client),
            bytes_by_device,
            requests_by_device,
        }
    }

    /// Body bytes sent in all, without the tables of [`Self::stats`].
    pub fn total_bytes(&self) -> u64 {
        self.shared.total.load(Ordering::Relaxed)
    }

    /// The per-device maps, brought up to date: only the entries whose counters moved since the
    /// last read are written (a snapshot published many times a second during a rollout of
    /// 100,000 devices copied and sorted every entry each time).
    fn device_maps(&self) -> (OrdMap<String, u64>, OrdMap<String, u64>) {
        let s = &self.shared;
        let mut maps = s.device_maps.lock().unwrap_or_else(PoisonError::into_inner);
        let devices = s.by_device.lock().unwrap_or_else(PoisonError::into_inner);
        for (device, counters) in devices.iter() {
            let bytes = counters.bytes.load(Ordering::Relaxed);
            if counters.seen_bytes.swap(bytes, Ordering::Relaxed) != bytes {
                maps.bytes.insert(device.clone(), bytes);
            }
            let requests = counters.requests.load(Ordering::Relaxed);
            if counters.seen_requests.swap(requests, Ordering::Relaxed) != requests {
                maps.requests.insert(device.clone(), requests);
            }
        }
        (maps.bytes.clone(), maps.requests.clone())
    }
}

// ---- per-device links of campaigns ------------------------------------------------------------

/// What a campaign's devices may download while it runs: [`FirmwareServer::grant`].
#[derive(Debug, Clone)]
pub struct DownloadGrant {
    /// The campaign's id (what [`FirmwareServer::revoke`] names).
    pub campaign: i64,
    /// The campaign's own link (from [`FirmwareServer::campaign_url`], possibly stored and
    /// read back after a restart): it must carry this server's public base and `file_name`.
    pub campaign_url: String,
    pub file_path: PathBuf,
    pub file_name: String,
    pub package_key: String,
    /// `(token, device)`: each device's token (see `download_token`) and the device id text
    /// its downloads are counted and logged under.
    pub devices: Vec<(String, String)>,
}

/// One device's link of a granted campaign.
struct Granted {
    campaign: i64,
    device: String,
    offer: Arc<Offer>,
    counters: Arc<DeviceCounters>,
}

struct DeviceCounters {
    requests: AtomicU64,
    bytes: Arc<AtomicU64>,
    /// What [`FirmwareServer::stats`] last read of the two above (`u64::MAX`: never read), so
    /// it writes only what moved. Touched only with `device_maps` locked.
    seen_requests: AtomicU64,
    seen_bytes: AtomicU64,
}

impl Default for DeviceCounters {
    fn default() -> Self {
        DeviceCounters {
            requests: AtomicU64::default(),
            bytes: Arc::default(),
            seen_requests: AtomicU64::new(u64::MAX),
            seen_bytes: AtomicU64::new(u64::MAX),
        }
    }
}

/// The per-device tables of [`ServedStats`] as last read.
#[derive(Default)]
struct DeviceMaps {
    bytes: OrdMap<String, u64>,
    requests: OrdMap<String, u64>,
}

impl Granted {
    /// Counts and logs a request on this device's link: a link that leaked is traceable.
    fn note_request(&self, client: IpAddr, request: &Request) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let range = request
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok());
        // Devices that fetch in many small ranges would flood the log: the start of a download
        // (no range, or one from byte 0) is logged as info, the rest as debug.
        let start = range.is_none_or(|r| r.trim().starts_with("bytes=0-"));
        if start {
            tracing::info!(device = %self.device, campaign = self.campaign, %client,
                range = range.unwrap_or("-"), "firmware download on a per-device link");
        } else {
            tracing::debug!(device = %self.device, campaign = self.campaign, %client,
                range = range.unwrap_or("-"), "firmware download on a per-device link");
        }
    }
}

impl Shared {
    fn granted(&self, token: &str, file_name: &str) -> Option<Arc<Granted>> {
        let grants = self.grants.read().unwrap_or_else(PoisonError::into_inner);
        grants
            .get(token)
            .filter(|g| g.offer.file_name == file_name)
            .cloned()
    }
}

impl FirmwareServer {
    /// A campaign's own link under a fresh token. It is not served: it is the key the
    /// campaign's per-device links are derived from (`download_token`) and then
    /// [`FirmwareServer::grant`]ed.
    pub fn campaign_url(&self, file_name: &str) -> String {
        OfferUrl::fresh(&self.public_base, file_name).to_string()
    }

    /// Serves `grant.file_path` to each of `grant.devices` under its own token, until
    /// [`FirmwareServer::revoke`]. Granting a campaign again replaces its earlier grant.
    /// Refused when the campaign link is not one of this server's (another public base).
    pub fn grant(&self, grant: DownloadGrant) -> Result<(), HttpError> {
        self.token_in(&grant.campaign_url, &grant.file_name)?;
        let offer = self.new_offer(grant.file_path, &grant.file_name, &grant.package_key);
        let entries: Vec<(String, Arc<Granted>)> = grant
            .devices
            .into_iter()
            .map(|(token, device)| {
                let counters = self.device_counters(&device);
                let granted = Granted {
                    campaign: grant.campaign,
                    device,
                    offer: offer.clone(),
                    counters,
                };
                (token, Arc::new(granted))
            })
            .collect();
        let count = entries.len();
        let mut grants = self
            .shared
            .grants
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        grants.retain(|_, g| g.campaign != grant.campaign);
        grants.extend(entries);
        drop(grants);
        tracing::info!(
            campaign = grant.campaign,
            devices = count,
            "per-device download links granted"
        );
        Ok(())
    }

    /// Ends campaign `campaign`'s per-device links (they answer 404 from now on; downloads in
    /// progress finish). Returns how many links it ended.
    pub fn revoke(&self, campaign: i64) -> usize {
        let mut grants = self
            .shared
            .grants
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = grants.len();
        grants.retain(|_, g| g.campaign != campaign);
        let revoked = before - grants.len();
        drop(grants);
        if revoked > 0 {
            tracing::info!(
                campaign,
                links = revoked,
                "per-device download links revoked"
            );
        }
        revoked
    }

    /// The counters of `device`, kept across campaigns. Only grants add entries (devices the
    /// operator targeted), never requests, so the table cannot be grown from the network.
    fn device_counters(&self, device: &str) -> Arc<DeviceCounters> {
        let mut devices = self
            .shared
            .by_device
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        devices.entry(device.to_owned()).or_default().clone()
    }
}

fn snapshot<K: Clone + Ord>(map: &Mutex<HashMap<K, Arc<AtomicU64>>>) -> BTreeMap<K, u64> {
    let map = map.lock().unwrap_or_else(PoisonError::into_inner);
    map.iter()
        .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
        .collect()
}

/// Whether `token` has the shape [`FirmwareServer::offer`] gives tokens: 32 hex digits.
pub fn is_offer_token(token: &str) -> bool {
    token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `http://h:p/fw/TOKEN/name` -> `TOKEN`; anything that is not such a link is taken as the
/// token itself.
fn token_of(url_or_token: &str) -> String {
    OfferUrl::parse(url_or_token).map_or_else(|| url_or_token.to_owned(), |url| url.token)
}

// ---- the download-link format -----------------------------------------------------------------

/// A download link made by this server: `{base}/fw/{token}/{file}`. The one owner of that
/// format: the server builds its offers and campaign links with it, the per-device links
/// (`download_token`) swap its token, and the engine and the CLI read stored offers with it.
///
/// `base` is the public base (`http(s)://host[:port]`, possibly with a path, no trailing `/`);
/// `token` is 32 hex digits; `file` is the file name as one percent-encoded path segment. When
/// a base itself holds `/fw/`, the last `/fw/` of the link counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OfferUrl {
    base: String,
    token: String,
    file: String,
}

impl OfferUrl {
    /// A link under a fresh random token.
    fn fresh(base: &str, file_name: &str) -> OfferUrl {
        OfferUrl {
            base: base.to_owned(),
            token: format!("{:032x}", rand::random::<u128>()),
            file: percent_encode_segment(file_name),
        }
    }

    /// Reads a link of ours; `None` for any other text (e.g. an operator's external URL).
    pub fn parse(url: &str) -> Option<OfferUrl> {
        let at = url.rfind("/fw/")?;
        let (base, rest) = (url.get(..at)?, url.get(at + "/fw/".len()..)?);
        let (token, file) = rest.split_once('/')?;
        let host = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))?;
        let well_formed = !host.is_empty()
            && !host.starts_with('/')
            && is_offer_token(token)
            && !file.is_empty()
            && !file.contains('/');
        well_formed.then(|| OfferUrl {
            base: base.to_owned(),
            token: token.to_owned(),
            file: file.to_owned(),
        })
    }

    /// The public base in front of `/fw/`, e.g. `http://10.0.0.2:8080`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The 32-hex-digit token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether the base is only `scheme://authority` (no path), i.e. the server's own address
    /// rather than a path behind a proxy.
    pub fn base_is_origin(&self) -> bool {
        !self.authority_and_path().contains('/')
    }

    /// The port the base names (`host:port` or `[v6]:port`); `None` for a bare host.
    pub fn port(&self) -> Option<u16> {
        let authority = self
            .authority_and_path()
            .split('/')
            .next()
            .unwrap_or_default();
        authority
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty() && (!host.contains(':') || host.ends_with(']')))
            .and_then(|(_, port)| port.parse::<u16>().ok())
    }

    /// The same token and file under another public base (a trailing `/` is dropped).
    pub fn rebased(&self, base: &str) -> OfferUrl {
        OfferUrl {
            base: base.trim().trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    /// The same link with another token (a device's own, from `download_token`).
    pub fn with_token(&self, token: String) -> OfferUrl {
        OfferUrl {
            token,
            ..self.clone()
        }
    }

    fn authority_and_path(&self) -> &str {
        self.base
            .strip_prefix("http://")
            .or_else(|| self.base.strip_prefix("https://"))
            .unwrap_or_default()
    }
}

impl std::fmt::Display for OfferUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/fw/{}/{}", self.base, self.token, self.file)
    }
}

fn checked_public_base(base: String) -> Result<String, HttpError> {
    let trimmed = base.trim().trim_end_matches('/');
    let host = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"));
    match host {
        Some(h) if !h.is_empty() => Ok(trimmed.to_owned()),
        _ => Err(HttpError::PublicBase(base)),
    }
}

/// The URL devices can reach: the bound IP, or for a wildcard bind this machine's primary LAN
/// address.
fn derived_public_base(local: SocketAddr, https: bool) -> String {
    let scheme = if https { "https" } else { "http" };
    let ip = match local.ip() {
        ip if !ip.is_unspecified() => ip,
        IpAddr::V4(_) => primary_lan_ip(false).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(_) => primary_lan_ip(true).unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    };
    match ip {
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{}", local.port()),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{}", local.port()),
    }
}

/// Percent-encodes everything except RFC 3986 unreserved characters, so a file name is always
/// exactly one path segment.
fn percent_encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The peer of the connection a request came on, inserted by the accept loop.
#[derive(Clone, Copy)]
struct ClientAddr(SocketAddr);

async fn serve_offer(
    State(shared): State<Arc<Shared>>,
    Path((token, file_name)): Path<(String, String)>,
    mut request: Request,
) -> Response {
    let (offer, granted) = match shared.offer(&token, &file_name) {
        Some(offer) => (offer, None),
        None => match shared.granted(&token, &file_name) {
            Some(granted) => (granted.offer.clone(), Some(granted)),
            None => return StatusCode::NOT_FOUND.into_response(),
        },
    };
    let client = request
        .extensions()
        .get::<ClientAddr>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    if let Some(granted) = &granted {
        granted.note_request(client, &request);
    }
    // Devices get the stored bytes with an exact Content-Length, never an encoded variant: an
    // embedded client has no decoder, whatever its request says.
    request.headers_mut().remove(header::ACCEPT_ENCODING);
    let is_head = request.method() == Method::HEAD;
    let cached = if is_head {
        None
    } else {
        offer.cache.get().await
    };
    let disk = if is_head || cached.is_some() {
        None
    } else {
        offer.cache.shared_handle().await
    };
    let chunk = stream_chunk(shared.active.load(Ordering::Relaxed));
    let served = ServeFile::new(&offer.path)
        .with_buf_chunk_size(chunk)
        .try_call(request)
        .await;
    let response = match served {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(
                "{}",
                tr!(
                    "log.http.cannot_read_offer",
                    path = offer.path.display(),
                    why = e
                )
            );
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let (mut parts, body) = response.into_parts();
    if parts.status.is_success() {
        // Devices must store the bytes, never render them: no guessing from the extension.
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    let mut counters = vec![
        offer.bytes.clone(),
        shared.client_counter(client),
        shared.total.clone(),
    ];
    counters.extend(granted.map(|g| g.counters.bytes.clone()));
    // ServeFile decided status, length and range; only the bytes come from the in-memory copy
    // or, for larger files, from the descriptor all downloads of the file share (ServeFile's
    // own body, with a descriptor per download, is dropped here).
    let inner = match cached.and_then(|c| body_range(&parts, c.len(), is_head).map(|r| c.slice(r)))
    {
        Some(slice) => Body::new(SliceBody::new(slice, CHUNK_BYTES)),
        None => match disk.and_then(|(file, len)| {
            let len = usize::try_from(len).ok()?;
            body_range(&parts, len, is_head).map(|r| (file, r))
        }) {
            Some((file, range)) => {
                let active = shared.active.clone();
                let chunk = Arc::new(move || stream_chunk(active.load(Ordering::Relaxed)));
                let budget = shared.stream_budget.clone();
                Body::new(DiskBody::new(file, range, chunk, budget, MIN_STREAM_CHUNK))
            }
            None => Body::new(body),
        },
    };
    // Shaped before counted: the counters say what went to the socket.
    let inner = match &shared.pacer {
        Some(pacer) => Body::new(ShapedBody::new(inner, pacer.clone())),
        None => inner,
    };
    let body = CountingBody { inner, counters };
    Response::from_parts(parts, Body::new(body))
}

/// The bytes of the file ServeFile's response carries (whole file for 200, the Content-Range
/// for 206), if they are consistent with a file of `len` bytes. `None`: no body, or let
/// ServeFile's own body stream it.
fn body_range(parts: &Parts, len: usize, is_head: bool) -> Option<Range<usize>> {
    if is_head {
        return None;
    }
    match parts.status {
        StatusCode::OK => {
            let length = parts.headers.get(header::CONTENT_LENGTH)?.to_str().ok()?;
            (length.parse::<usize>().ok()? == len).then_some(0..len)
        }
        StatusCode::PARTIAL_CONTENT => {
            let value = parts.headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
            let (span, total) = value.strip_prefix("bytes ")?.split_once('/')?;
            if total.parse::<usize>().ok()? != len {
                return None;
            }
            let (first, last) = span.split_once('-')?;
            let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
            (first <= last && last < len).then(|| first..last + 1)
        }
        _ => None,
    }
}

/// Counts body bytes as hyper pulls them (i.e. as they go to the socket).
struct CountingBody {
    inner: Body,
    counters: Vec<Arc<AtomicU64>>,
}

impl HttpBody for CountingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let sent = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        };
        if sent > 0 {
            for counter in &self.counters {
                counter.fetch_add(sent, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Binds `addr` with a deep accept queue. tokio's `TcpListener::bind` asks for 128: a wave of
/// devices connecting at once then overflows it and each dropped SYN costs its device 1 s, 3 s,
/// 7 s… of retransmission (measured: 2,000 clients, 256 connecting at a time, 25 s instead of
/// 1 s). Like `std`'s bind, it reuses addresses in TIME_WAIT (never a port someone listens on).
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Raises the open-file limit for `wanted` connections and returns the cap it allows, saying
/// in the log when that is less than configured.
fn connection_cap_in_force(wanted: usize) -> usize {
    let wanted = wanted.max(1);
    let files = crate::host::raise_open_file_limit(
        u64::try_from(wanted)
            .unwrap_or(u64::MAX)
            .saturating_add(RESERVED_OPEN_FILES),
    );
    let cap = connection_cap(wanted, files.limit);
    if cap < wanted {
        let why = files
            .refused
            .map_or_else(|| "the hard limit is lower".to_owned(), |e| e.to_string());
        tracing::warn!(configured = wanted, in_force = cap, open_file_limit = files.limit,
            reason = %why,
            "the firmware server takes fewer connections at once than configured: the open-file \
             limit is too low (raise it with `ulimit -n` or LimitNOFILE=); further devices wait \
             in the accept queue");
    }
    cap
}

/// The connection cap `open_files` (the soft limit, `None`: unlimited) leaves room for:
/// `wanted`, or the limit less what the rest of the process needs.
fn connection_cap(wanted: usize, open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return wanted;
    };
    let room = limit
        .saturating_sub(RESERVED_OPEN_FILES)
        .max(limit / 2)
        .max(1);
    wanted.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// Read size per body frame for a file streamed from disk with `active` connections open: the
/// read buffers together stay within [`STREAM_BUFFER_BUDGET`] (or the floor per connection).
fn stream_chunk(active: u64) -> usize {
    let active = usize::try_from(active.max(1)).unwrap_or(usize::MAX);
    (STREAM_BUFFER_BUDGET / active).clamp(MIN_STREAM_CHUNK, CHUNK_BYTES)
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!("{}", tr!("log.http.cannot_accept", why = e));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let service = router.clone().map_request(move |mut request: Request<_>| {
            request.extensions_mut().insert(ClientAddr(peer));
            request
        });
        let tls = tls.clone();
        tokio::spawn(async move {
            shared.active.fetch_add(1, Ordering::Relaxed);
            let counting = shared.clone();
            let service = tower::service_fn(move |request| {
                counting.requests.fetch_add(1, Ordering::Relaxed);
                service.clone().oneshot(request)
            });
            let served = match tls {
                None => serve_http1(StallGuard::new(stream, WRITE_STALL_TIMEOUT), service).await,
                Some(acceptor) => serve_https(stream, acceptor, service, &shared).await,
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "firmware download connection ended");
            }
            shared.active.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

/// Serves one connection of the HTTPS port: the TLS handshake, then HTTP/1.1. The handshake is
/// the first thing a client sends, so it gets the header timeout; a client that starts with a
/// plain-HTTP request (a method name where a TLS record should be) is told in a `400`.
async fn serve_https<S>(
    mut stream: TcpStream,
    acceptor: TlsAcceptor,
    service: S,
    shared: &Shared,
) -> Result<(), String>
where
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let deadline = tokio::time::Instant::now() + HEADER_READ_TIMEOUT;
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Err(_) => return Err("TLS handshake timed out".to_owned()),
        Ok(Err(e)) => return Err(format!("TLS handshake failed: {e}")),
        Ok(Ok(0)) => return Ok(()),
        Ok(Ok(_)) => {}
    }
    // A TLS record starts with its content type (22 for a handshake), never with a letter.
    if first[0].is_ascii_uppercase() {
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let _ = tokio::time::timeout_at(deadline, answer_plain_http(&mut stream)).await;
        return Err("plain HTTP on the HTTPS port".to_owned());
    }
    let guarded = StallGuard::new(stream, WRITE_STALL_TIMEOUT);
    match tokio::time::timeout_at(deadline, acceptor.accept(guarded)).await {
        Ok(Ok(tls_stream)) => serve_http1(tls_stream, service).await,
        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
        Err(_) => Err("TLS handshake timed out".to_owned()),
    }
}

/// Reads the plain request's head first: closing a socket with unread bytes resets it, and the
/// reset could destroy the answer before the client reads it.
async fn answer_plain_http(stream: &mut TcpStream) -> io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < PLAIN_HEAD_BYTES && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await? {
            0 => break,
            n => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{PLAIN_ON_TLS_BODY}",
        PLAIN_ON_TLS_BODY.len()
    );
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await
}

/// Serves HTTP/1.1 requests on one connection (plain or TLS) until it closes.
async fn serve_http1<I, S>(io: I, service: S) -> Result<(), String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // Names are case-insensitive in HTTP, but many embedded HTTP clients look for
        // `Content-Length` byte for byte (issue #11): write them as nginx does.
        // hyper capitalises after each `-`, so the one difference is `Etag`.
        .title_case_headers(true)
        // At most this much is read ahead of the socket (body frames queued for writing) or
        // buffered of a request head: with 10,000 slow clients hyper's default (~400 KiB)
        // would hold gigabytes of file chunks. Request heads of devices are far smaller.
        .max_buf_size(MAX_CONNECTION_BUFFER)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .await
        .map_err(|e| e.to_string())
}

/// A TCP stream whose writes fail after the peer has read nothing for `limit`.
struct StallGuard {
    stream: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl StallGuard {
    fn new(stream: TcpStream, limit: Duration) -> StallGuard {
        StallGuard {
            stream,
            limit,
            stalled: None,
        }
    }

    /// Called when a write made no progress: starts or checks the stall timer.
    fn stall_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        timer.as_mut().poll(cx).is_ready()
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Pending if self.stall_expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Pending if self.stall_expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_become_one_safe_segment() {
        assert_eq!(percent_encode_segment("fw-1.2_a~b.bin"), "fw-1.2_a~b.bin");
        assert_eq!(percent_encode_segment("../a b/é"), "..%2Fa%20b%2F%C3%A9");
    }

    const TOKEN: &str = "0123456789abcdef0123456789ABCDEF";

    #[test]
    fn tokens_are_found_in_urls() {
        assert_eq!(token_of(&format!("http://h:1/fw/{TOKEN}/x.bin")), TOKEN);
        assert_eq!(token_of("abc123"), "abc123");
    }

    #[test]
    fn offer_urls_are_told_from_external_urls() {
        let url = format!("http://10.0.0.2:8080/fw/{TOKEN}/fw%201.bin");
        let offer = OfferUrl::parse(&url).unwrap();
        assert_eq!(offer.to_string(), url);
        assert_eq!(
            (offer.base(), offer.token(), offer.port()),
            ("http://10.0.0.2:8080", TOKEN, Some(8080))
        );
        for foreign in [
            "https://cdn.example.test/fw/2.0.0/fw.bin".to_owned(),
            "https://cdn.example.test/fw.bin".to_owned(),
            format!("http://x/fw/{TOKEN}"),
            format!("http://x/fw/{TOKEN}/"),
            format!("ftp://x:21/fw/{TOKEN}/a"),
            format!("http:///fw/{TOKEN}/a"),
            "http://a:1/fw/not-a-token/y".to_owned(),
        ] {
            assert_eq!(OfferUrl::parse(&foreign), None, "{foreign}");
        }
    }

    #[test]
    fn offer_urls_name_their_port_and_move_to_another_base() {
        let at = |url: String| OfferUrl::parse(&url).unwrap();
        let v6 = at(format!("http://[::1]:8080/fw/{TOKEN}/a"));
        assert_eq!((v6.base(), v6.port()), ("http://[::1]:8080", Some(8080)));
        assert_eq!(
            at(format!("https://fw.example.test/fw/{TOKEN}/a")).port(),
            None
        );
        assert_eq!(at(format!("http://[::1]/fw/{TOKEN}/a")).port(), None);
        // A base behind a proxy path: the link still parses (the last `/fw/` counts).
        let proxied = at(format!("http://a:81/ota/fw/x/fw/{TOKEN}/y"));
        assert_eq!(proxied.base(), "http://a:81/ota/fw/x");
        assert!(!proxied.base_is_origin());
        assert_eq!(proxied.port(), Some(81));
        assert!(v6.base_is_origin());
        assert_eq!(
            v6.rebased("https://fw.example.test/").to_string(),
            format!("https://fw.example.test/fw/{TOKEN}/a")
        );
        let other = "fedcba9876543210fedcba9876543210".to_owned();
        assert_eq!(
            v6.with_token(other.clone()).to_string(),
            format!("http://[::1]:8080/fw/{other}/a")
        );
    }

    #[test]
    fn fresh_offer_urls_encode_the_file_name_and_read_back() {
        let url = OfferUrl::fresh("http://h:1", "fw 1.bin");
        assert!(is_offer_token(url.token()));
        assert_eq!(OfferUrl::parse(&url.to_string()), Some(url));
    }

    #[test]
    fn public_base_must_be_http() {
        assert_eq!(
            checked_public_base("http://10.0.0.2:8080/".into()).unwrap(),
            "http://10.0.0.2:8080"
        );
        assert!(checked_public_base("ftp://x".into()).is_err());
        assert!(checked_public_base("http://".into()).is_err());
    }

    #[test]
    fn public_base_uses_the_bound_ip() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(derived_public_base(v4, false), "http://127.0.0.1:8080");
        assert_eq!(derived_public_base(v4, true), "https://127.0.0.1:8080");
        let v6: SocketAddr = "[::1]:81".parse().unwrap();
        assert_eq!(derived_public_base(v6, false), "http://[::1]:81");
    }

    fn parts(status: StatusCode, headers: &[(header::HeaderName, &str)]) -> Parts {
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn body_range_follows_serve_file_and_refuses_mismatches() {
        let full = parts(StatusCode::OK, &[(header::CONTENT_LENGTH, "1000")]);
        assert_eq!(body_range(&full, 1000, false), Some(0..1000));
        assert_eq!(body_range(&full, 1000, true), None);
        assert_eq!(body_range(&full, 999, false), None);
        let partial = parts(
            StatusCode::PARTIAL_CONTENT,
            &[(header::CONTENT_RANGE, "bytes 900-999/1000")],
        );
        assert_eq!(body_range(&partial, 1000, false), Some(900..1000));
        assert_eq!(body_range(&partial, 2000, false), None);
        let beyond = parts(
            StatusCode::PARTIAL_CONTENT,
            &[(header::CONTENT_RANGE, "bytes 900-1000/1000")],
        );
        assert_eq!(body_range(&beyond, 1000, false), None);
        let refused = parts(StatusCode::RANGE_NOT_SATISFIABLE, &[]);
        assert_eq!(body_range(&refused, 1000, false), None);
    }

    #[test]
    fn the_open_file_limit_caps_connections_with_room_for_the_rest() {
        assert_eq!(connection_cap(16_384, None), 16_384);
        assert_eq!(connection_cap(16_384, Some(1_048_576)), 16_384);
        assert_eq!(connection_cap(16_384, Some(1024)), 768);
        assert_eq!(connection_cap(16_384, Some(100)), 50);
        assert_eq!(connection_cap(16_384, Some(0)), 1);
        assert_eq!(connection_cap(10, Some(20_000)), 10);
    }

    #[test]
    fn disk_read_buffers_shrink_as_connections_grow() {
        assert_eq!(stream_chunk(0), CHUNK_BYTES);
        assert_eq!(stream_chunk(64), CHUNK_BYTES);
        assert_eq!(stream_chunk(1024), 64 * 1024);
        assert_eq!(stream_chunk(2048), 32 * 1024);
        assert_eq!(stream_chunk(10_000), MIN_STREAM_CHUNK);
        assert_eq!(stream_chunk(1_000_000), MIN_STREAM_CHUNK);
        // Together within the budget until the floor is reached.
        for active in [1u64, 300, 5_000, 16_384] {
            let total = stream_chunk(active) * active as usize;
            assert!(total <= STREAM_BUFFER_BUDGET.max(MIN_STREAM_CHUNK * active as usize));
        }
    }

    #[test]
    fn client_table_is_bounded() {
        let shared = Shared::default();
        for i in 0..MAX_TRACKED_CLIENTS as u32 + 10 {
            shared.client_counter(IpAddr::V4(Ipv4Addr::from(i + 1)));
        }
        let clients = shared.by_client.lock().unwrap();
        assert_eq!(clients.len(), MAX_TRACKED_CLIENTS + 1);
    }
}
