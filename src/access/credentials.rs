//! Who a connecting client is: credentials and their checks.
//!
//! Owns:
//! - the console's own identity, generated once and kept in `<data dir>/broker-console.json`
//!   (0600) — [`ConsoleCredentials::load_or_create`];
//! - the Alibaba device-secret table, imported from the CSV the Alibaba IoT console exports
//!   (columns `ProductKey`, `DeviceName`, `DeviceSecret`, any case, any order, extra columns and
//!   a UTF-8 BOM tolerated) and kept in `<data dir>/alibaba-device-secrets.csv` (0600) —
//!   [`SecretTable`];
//! - the user-name/password file for the other dialects, `<data dir>/mqtt-users.txt` (0600) —
//!   [`UserTable`], format below;
//! - [`Authenticator::authenticate`]: console credentials, then Alibaba signatures, then the
//!   user table; every password compared in constant time;
//! - [`Throttle`]: the refusal counter with back-off per source address and per user name,
//!   driven by an injected clock.
//!
//! # `mqtt-users.txt`
//! One user per line, fields separated by spaces or tabs; `#` starts a comment line:
//! ```text
//! # user-name   password        what it may act as (one or more)
//! dock-site-1   Kq3…long…       dji:DOCK1SN
//! lab-benches   Zr8…long…       fogcloud:a1pk/gw-1 fogcloud:a1pk/gw-2
//! pump-7        Vx2…long…       aws:pump-7
//! ```
//! Each identity is a device id (`aliyun:pk/dn`, `fogcloud:pk/dn`, `dji:SN`) or `aws:{thing}`.
//! One device makes the user that device; several make a site (the union of their rights).
//! User names and passwords cannot contain whitespace; user names cannot contain `:` (the
//! Mosquitto password file's separator). Passwords are stored as written: the file is 0600, and
//! the embedded broker needs them to check logins.

use crate::i18n::tr;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::alibaba_sign::{self, SignError};
use super::rules::Identity;
use crate::device_id::DeviceId;
use crate::private_fs;
use crate::time::Timestamp;

/// The console's credentials file in the data directory.
pub const CONSOLE_FILE: &str = "broker-console.json";
/// The imported Alibaba device secrets in the data directory.
pub const SECRETS_FILE: &str = "alibaba-device-secrets.csv";
/// The user-name/password file in the data directory.
pub const USERS_FILE: &str = "mqtt-users.txt";

/// The first lines of a `mqtt-users.txt` the console creates.
const USERS_FILE_HEADER: &str =
    "# ota-console MQTT users: user-name password identity... (see the README)\n";

/// Largest credentials file read (a secret table of ~100k devices fits).
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why credentials could not be loaded, imported or saved.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{}", tr!("error.file", path = path.display(), why = crate::i18n::io_error(cause)))]
    Io { path: PathBuf, cause: io::Error },
    #[error("{}", tr!("error.credentials.too_large", path = path.display(), limit = MAX_FILE_BYTES))]
    TooLarge { path: PathBuf },
    #[error("{}", tr!("error.credentials.bad_console_file", path = path.display(), detail = detail))]
    BadConsoleFile { path: PathBuf, detail: String },
    #[error("{}", tr!("error.credentials.bad_line", file = source_name, line = line, detail = detail))]
    BadLine {
        source_name: String,
        line: u64,
        detail: String,
    },
    #[error("{}", tr!("error.credentials.missing_column", file = source_name, column = column))]
    MissingColumn {
        source_name: String,
        column: &'static str,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CredentialsError + '_ {
    move |cause| CredentialsError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Reads a whole file, bounded; `None` when it does not exist.
fn read_bounded(path: &Path) -> Result<Option<Vec<u8>>, CredentialsError> {
    private_fs::read_bounded(path, MAX_FILE_BYTES).map_err(|e| match e {
        private_fs::BoundedReadError::Io(e) => io_err(path)(e),
        private_fs::BoundedReadError::TooLarge => CredentialsError::TooLarge {
            path: path.to_path_buf(),
        },
    })
}

/// Replaces `path` with `contents` atomically, mode 0600.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), CredentialsError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    private_fs::create_private_dir(dir).map_err(io_err(dir))?;
    // tempfile creates its files 0600.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    tmp.write_all(contents).map_err(io_err(path))?;
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    private_fs::tighten_if_present(path).map_err(io_err(path))
}

/// Equal in constant time, whatever the lengths (both sides are hashed first).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

// ---------------------------------------------------------------------------------------------
// The console's own identity

/// The user name and password the console connects with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for ConsoleCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleCredentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl ConsoleCredentials {
    /// Fresh random credentials (user name `ota-console-` + 8 hex digits, 192-bit password).
    pub fn generate() -> ConsoleCredentials {
        ConsoleCredentials {
            username: format!("ota-console-{}", hex::encode(rand::random::<[u8; 4]>())),
            password: hex::encode(rand::random::<[u8; 24]>()),
        }
    }

    /// The data directory's console credentials, created (0600) on first use and reused after.
    pub fn load_or_create(data_dir: &Path) -> Result<ConsoleCredentials, CredentialsError> {
        private_fs::create_private_dir(data_dir).map_err(io_err(data_dir))?;
        let path = data_dir.join(CONSOLE_FILE);
        let fresh = serde_json::to_vec_pretty(&Self::generate()).unwrap_or_default();
        // Created only when absent (O_EXCL): two consoles starting together agree on one.
        private_fs::private_file(&path, &fresh).map_err(io_err(&path))?;
        Self::load(&path)
    }

    /// Reads an existing credentials file.
    pub fn load(path: &Path) -> Result<ConsoleCredentials, CredentialsError> {
        let bad = |detail: String| CredentialsError::BadConsoleFile {
            path: path.to_path_buf(),
            detail,
        };
        let bytes = read_bounded(path)?.ok_or_else(|| bad(tr!("error.credentials.missing")))?;
        let creds: ConsoleCredentials =
            serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if creds.username.is_empty() || creds.password.is_empty() {
            return Err(bad(tr!("error.credentials.empty_login")));
        }
        if creds
            .username
            .contains(|c: char| c == ':' || c.is_whitespace())
        {
            return Err(bad(tr!("error.credentials.user_name_spaces")));
        }
        Ok(creds)
    }
}

// ---------------------------------------------------------------------------------------------
// Alibaba device secrets

/// Device secrets by (product key, device name).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretTable {
    secrets: BTreeMap<(String, String), String>,
}

impl std::fmt::Debug for SecretTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretTable({} devices)", self.secrets.len())
    }
}

impl SecretTable {
    /// Parses the Alibaba console's CSV export. `source_name` names the input in errors.
    pub fn from_csv(bytes: &[u8], source_name: &str) -> Result<SecretTable, CredentialsError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let bad_line = |line: u64, detail: String| CredentialsError::BadLine {
            source_name: source_name.to_owned(),
            line,
            detail,
        };
        let headers = reader
            .headers()
            .map_err(|e| bad_line(1, e.to_string()))?
            .clone();
        let column = |name: &'static str| {
            headers
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name))
                .ok_or_else(|| CredentialsError::MissingColumn {
                    source_name: source_name.to_owned(),
                    column: name,
                })
        };
        let (pk_col, dn_col, secret_col) = (
            column("ProductKey")?,
            column("DeviceName")?,
            column("DeviceSecret")?,
        );
        let mut table = SecretTable::default();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                bad_line(line, e.to_string())
            })?;
            let line = record.position().map_or(0, |p| p.line());
            if record.iter().all(str::is_empty) {
                continue;
            }
            let field = |col: usize, name: &str| match record.get(col) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(bad_line(
                    line,
                    tr!("error.credentials.column_empty", column = name),
                )),
            };
            let (pk, dn, secret) = (
                field(pk_col, "ProductKey")?,
                field(dn_col, "DeviceName")?,
                field(secret_col, "DeviceSecret")?,
            );
            DeviceId::aliyun(pk, dn).map_err(|e| bad_line(line, e.to_string()))?;
            if secret.len() > alibaba_sign::MAX_FIELD_BYTES || secret.contains(char::is_control) {
                return Err(bad_line(
                    line,
                    "DeviceSecret is too long or has control characters".into(),
                ));
            }
            let key = (pk.to_owned(), dn.to_owned());
            match table.secrets.get(&key) {
                Some(existing) if existing != secret => {
                    return Err(bad_line(
                        line,
                        format!("{pk}/{dn} appears twice with different secrets"),
                    ));
                }
                _ => {
                    table.secrets.insert(key, secret.to_owned());
                }
            }
        }
        Ok(table)
    }

    /// The imported table of a data directory (empty when none was imported).
    pub fn load(data_dir: &Path) -> Result<SecretTable, CredentialsError> {
        let path = data_dir.join(SECRETS_FILE);
        match read_bounded(&path)? {
            Some(bytes) => Self::from_csv(&bytes, &path.display().to_string()),
            None => Ok(SecretTable::default()),
        }
    }

    /// Imports the CSV at `csv_path` into the data directory's table (a device already there
    /// takes the new secret). Returns how many devices the file held.
    pub fn import(data_dir: &Path, csv_path: &Path) -> Result<usize, CredentialsError> {
        let bytes = read_bounded(csv_path)?.ok_or_else(|| {
            io_err(csv_path)(io::Error::new(io::ErrorKind::NotFound, "no such file"))
        })?;
        let imported = Self::from_csv(&bytes, &csv_path.display().to_string())?;
        let mut table = Self::load(data_dir)?;
        let count = imported.secrets.len();
        table.secrets.extend(imported.secrets);
        write_private(&data_dir.join(SECRETS_FILE), &table.to_csv())?;
        Ok(count)
    }

    /// Adds (or replaces) one device's secret.
    pub fn insert(
        &mut self,
        product_key: &str,
        device_name: &str,
        secret: &str,
    ) -> Result<(), CredentialsError> {
        let bad = |detail: String| CredentialsError::BadLine {
            source_name: "new secret".to_owned(),
            line: 0,
            detail,
        };
        DeviceId::aliyun(product_key, device_name).map_err(|e| bad(e.to_string()))?;
        if secret.is_empty()
            || secret.len() > alibaba_sign::MAX_FIELD_BYTES
            || secret.contains(char::is_control)
        {
            return Err(bad(
                "DeviceSecret is empty, too long or has control characters".into(),
            ));
        }
        self.secrets.insert(
            (product_key.to_owned(), device_name.to_owned()),
            secret.to_owned(),
        );
        Ok(())
    }

    /// Writes the table as the data directory's secret file (0600, replaced atomically).
    pub fn save(&self, data_dir: &Path) -> Result<(), CredentialsError> {
        write_private(&data_dir.join(SECRETS_FILE), &self.to_csv())
    }

    /// The table as CSV with the export's header.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let _ = writer.write_record(["ProductKey", "DeviceName", "DeviceSecret"]);
        for ((pk, dn), secret) in &self.secrets {
            let _ = writer.write_record([pk, dn, secret]);
        }
        writer.into_inner().unwrap_or_default()
    }

    pub fn secret(&self, product_key: &str, device_name: &str) -> Option<&str> {
        self.secrets
            .get(&(product_key.to_owned(), device_name.to_owned()))
            .map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The devices with a secret.
    pub fn devices(&self) -> impl Iterator<Item = DeviceId> + '_ {
        self.secrets
            .keys()
            .filter_map(|(pk, dn)| DeviceId::aliyun(pk, dn).ok())
    }
}

// ---------------------------------------------------------------------------------------------
// User names and passwords for the other dialects

/// One line of `mqtt-users.txt`.
#[derive(Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub username: String,
    pub password: String,
    pub identity: Identity,
}

impl std::fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserEntry({:?} as {})", self.username, self.identity)
    }
}

/// The entries of `mqtt-users.txt`, by user name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserTable {
    users: BTreeMap<String, UserEntry>,
}

impl UserTable {
    /// Parses the file format described in the module documentation.
    pub fn parse(text: &str, source_name: &str) -> Result<UserTable, CredentialsError> {
        let mut table = UserTable::default();
        for (index, raw) in text.lines().enumerate() {
            let line = index as u64 + 1;
            let bad = |detail: String| CredentialsError::BadLine {
                source_name: source_name.to_owned(),
                line,
                detail,
            };
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let mut fields = content.split_whitespace();
            let (Some(username), Some(password)) = (fields.next(), fields.next()) else {
                return Err(bad(tr!("error.credentials.line_shape")));
            };
            if username.contains(':') || username.chars().any(char::is_control) {
                return Err(bad(tr!(
                    "error.credentials.user_name_control",
                    user = format!("{username:?}")
                )));
            }
            if password.chars().any(char::is_control) {
                return Err(bad(tr!("error.credentials.password_control")));
            }
            let mut devices = BTreeSet::new();
            for text in fields {
                let id: DeviceId = text.parse().map_err(|e| bad(format!("{text}: {e}")))?;
                devices.insert(id.device());
            }
            let identity = match devices.len() {
                0 => {
                    return Err(bad(tr!(
                        "error.credentials.no_device",
                        user = format!("{username:?}")
                    )));
                }
                1 => Identity::Device(devices.pop_first().ok_or_else(|| {
                    bad(tr!(
                        "error.credentials.no_device",
                        user = format!("{username:?}")
                    ))
                })?),
                _ => Identity::Site {
                    name: username.to_owned(),
                    devices,
                },
            };
            let entry = UserEntry {
                username: username.to_owned(),
                password: password.to_owned(),
                identity,
            };
            if table.users.insert(username.to_owned(), entry).is_some() {
                return Err(bad(tr!(
                    "error.credentials.user_twice",
                    user = format!("{username:?}")
                )));
            }
        }
        Ok(table)
    }

    /// The data directory's `mqtt-users.txt` (empty when there is none).
    pub fn load(data_dir: &Path) -> Result<UserTable, CredentialsError> {
        let path = data_dir.join(USERS_FILE);
        match read_bounded(&path)? {
            Some(bytes) => {
                private_fs::tighten_if_present(&path).map_err(io_err(&path))?;
                let text = String::from_utf8(bytes).map_err(|e| CredentialsError::BadLine {
                    source_name: path.display().to_string(),
                    line: 0,
                    detail: format!("not UTF-8: {e}"),
                })?;
                Self::parse(&text, &path.display().to_string())
            }
            None => Ok(UserTable::default()),
        }
    }

    pub fn get(&self, username: &str) -> Option<&UserEntry> {
        self.users.get(username)
    }

    /// Adds a user to the data directory's `mqtt-users.txt` (comments and other lines kept) and
    /// returns the new table. `identities` are device ids or `aws:{thing}`, as in the file. A
    /// user name already there is refused: nobody's password is replaced by accident.
    pub fn add_user(
        data_dir: &Path,
        username: &str,
        password: &str,
        identities: &[String],
    ) -> Result<UserTable, CredentialsError> {
        let path = data_dir.join(USERS_FILE);
        let mut text = match read_bounded(&path)? {
            Some(bytes) => String::from_utf8(bytes).map_err(|e| CredentialsError::BadLine {
                source_name: path.display().to_string(),
                line: 0,
                detail: format!("not UTF-8: {e}"),
            })?,
            None => USERS_FILE_HEADER.to_owned(),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{username} {password} {}\n", identities.join(" ")));
        let table = Self::parse(&text, &path.display().to_string())?;
        write_private(&path, text.as_bytes())?;
        Ok(table)
    }

    /// The user (device or site) whose rights cover `device`, a device's own user first.
    pub fn user_for(&self, device: &DeviceId) -> Option<&UserEntry> {
        let device = device.device();
        let own = self
            .users
            .values()
            .find(|e| matches!(&e.identity, Identity::Device(d) if *d == device));
        own.or_else(|| {
            self.users.values().find(
                |e| matches!(&e.identity, Identity::Site { devices, .. } if devices.contains(&device)),
            )
        })
    }

    pub fn entries(&self) -> impl Iterator<Item = &UserEntry> {
        self.users.values()
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// Why a login was refused (for the log and the inspector; the client only learns "refused").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{}", tr!("error.login.no_credentials"))]
    NoCredentials,
    #[error("{}", tr!("error.login.unknown_user", user = format!("{_0:?}")))]
    UnknownUser(String),
    #[error("{}", tr!("error.login.wrong_password", user = format!("{_0:?}")))]
    WrongPassword(String),
    #[error("{}", tr!("error.login.bad_signature", user = format!("{username:?}"), why = why))]
    BadSignature { username: String, why: SignError },
    #[error("{}", tr!("error.login.throttled", key = key, after = humantime::format_duration(*retry_after)))]
    Throttled { key: String, retry_after: Duration },
}

/// Everything needed to decide who a client is.
#[derive(Debug, Clone)]
pub struct Authenticator {
    pub console: ConsoleCredentials,
    pub secrets: SecretTable,
    pub users: UserTable,
}

impl Authenticator {
    /// The data directory's credentials: the console's (created if needed), the imported
    /// Alibaba secrets and `mqtt-users.txt`.
    pub fn load(data_dir: &Path) -> Result<Authenticator, CredentialsError> {
        Ok(Authenticator {
            console: ConsoleCredentials::load_or_create(data_dir)?,
            secrets: SecretTable::load(data_dir)?,
            users: UserTable::load(data_dir)?,
        })
    }

    /// Who the client is: the console; an Alibaba device whose signature matches its secret
    /// (client id with `|…signmethod=…|`, user name `{dn}&{pk}`); or a user of the user table.
    pub fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<Identity, Refusal> {
        let (Some(username), Some(password)) = (username, password) else {
            return Err(Refusal::NoCredentials);
        };
        if username == self.console.username {
            return if same_secret(password, self.console.password.as_bytes()) {
                Ok(Identity::Console)
            } else {
                Err(Refusal::WrongPassword(clip(username)))
            };
        }
        if alibaba_sign::parse_client_id(client_id).is_ok() && self.users.get(username).is_none() {
            return alibaba_sign::verify_login(client_id, username, password, |pk, dn| {
                self.secrets.secret(pk, dn)
            })
            .map_err(|why| Refusal::BadSignature {
                username: clip(username),
                why,
            })
            .and_then(|(pk, dn)| {
                DeviceId::aliyun(pk, dn)
                    .map(Identity::Device)
                    .map_err(|_| Refusal::UnknownUser(clip(username)))
            });
        }
        match self.users.get(username) {
            Some(entry) if same_secret(password, entry.password.as_bytes()) => {
                Ok(entry.identity.clone())
            }
            Some(_) => Err(Refusal::WrongPassword(clip(username))),
            None => {
                // The same work as a known user, so timing does not tell which names exist.
                let _ = same_secret(password, b"");
                Err(Refusal::UnknownUser(clip(username)))
            }
        }
    }
}

fn clip(text: &str) -> String {
    text.chars().take(128).collect()
}

// ---------------------------------------------------------------------------------------------
// Back-off against guessing

/// How refusals turn into waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Refusals from one source before any waiting.
    pub free_failures: u32,
    /// The first wait; each further refusal doubles it.
    pub first_block: Duration,
    /// The longest wait.
    pub max_block: Duration,
    /// A source with no refusal for this long starts afresh.
    pub forget_after: Duration,
    /// Sources tracked at most (the oldest is forgotten first): bounds memory under a flood.
    pub max_tracked: usize,
    /// Loopback clients are never held back (this machine: the console's own link, an
    /// in-process fleet). Off only to test the back-off on loopback.
    pub exempt_loopback: bool,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            free_failures: 5,
            first_block: Duration::from_secs(1),
            max_block: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(60 * 60),
            max_tracked: 10_000,
            exempt_loopback: true,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Strikes {
    failures: u32,
    last_failure: Timestamp,
    blocked_until: Timestamp,
}

/// Refusal counts per source (an address, a user name), with the time given by the caller.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    policy: BackoffPolicy,
    strikes: HashMap<String, Strikes>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Throttle {
    pub fn new(policy: BackoffPolicy) -> Throttle {
        Throttle {
            policy,
            strikes: HashMap::new(),
        }
    }

    /// The key of a source address.
    pub fn address_key(addr: std::net::IpAddr) -> String {
        format!("address {addr}")
    }

    /// The key of a user name.
    pub fn user_key(username: &str) -> String {
        format!("user {:?}", clip(username))
    }

    /// `Err` when any of `keys` must wait before its next attempt is even checked.
    pub fn check(&self, keys: &[String], now: Timestamp) -> Result<(), Refusal> {
        for key in keys {
            if let Some(s) = self.strikes.get(key)
                && s.blocked_until > now
            {
                return Err(Refusal::Throttled {
                    key: key.clone(),
                    retry_after: Duration::from_millis(
                        s.blocked_until.as_millis() - now.as_millis(),
                    ),
                });
            }
        }
        Ok(())
    }

    /// Counts one refusal against each of `keys`.
    pub fn record_failure(&mut self, keys: &[String], now: Timestamp) {
        for key in keys {
            let policy = self.policy;
            let fresh = Strikes {
                failures: 0,
                last_failure: now,
                blocked_until: now,
            };
            if !self.strikes.contains_key(key) {
                self.make_room(now);
            }
            let s = self.strikes.entry(key.clone()).or_insert(fresh);
            if now.as_millis().saturating_sub(s.last_failure.as_millis()) > ms(policy.forget_after)
            {
                *s = fresh;
            }
            s.failures = s.failures.saturating_add(1);
            s.last_failure = now;
            if let Some(over) = s
                .failures
                .checked_sub(policy.free_failures)
                .filter(|&o| o > 0)
            {
                let factor = 1u64.checked_shl(over - 1).unwrap_or(u64::MAX);
                let wait = ms(policy.first_block)
                    .saturating_mul(factor)
                    .min(ms(policy.max_block));
                s.blocked_until = now.plus_ms(wait);
            }
        }
    }

    /// A successful login clears the count of its user name (not of its address: one good
    /// account must not reset a guesser sharing the address).
    pub fn record_success(&mut self, username_key: &str) {
        self.strikes.remove(username_key);
    }

    /// How many sources are tracked.
    pub fn tracked(&self) -> usize {
        self.strikes.len()
    }

    fn make_room(&mut self, now: Timestamp) {
        if self.strikes.len() < self.policy.max_tracked {
            return;
        }
        let forget = ms(self.policy.forget_after);
        self.strikes.retain(|_, s| {
            now.as_millis().saturating_sub(s.last_failure.as_millis()) <= forget
                || s.blocked_until > now
        });
        while self.strikes.len() >= self.policy.max_tracked.max(1) {
            let oldest = self
                .strikes
                .iter()
                .min_by_key(|(_, s)| s.last_failure)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.strikes.remove(&k);
                }
                None => break,
            }
        }
    }
}

/// [`Authenticator`] and two [`Throttle`]s: what a broker's connect hook calls.
///
/// Refusals are counted per (source address, user name) pair, so a guesser is held back on the
/// name it guesses without locking that device out elsewhere (a stranger must not be able to
/// keep a dock off the broker by failing its password on purpose), and per source address with
/// a larger allowance, against one address trying many names. The per-address wait does not
/// apply to a pair that logged in from there recently (a site's NAT: one stranger must not
/// keep the known devices behind it off). Loopback is not throttled at all: it is this machine
/// (the console's own link, an in-process fleet), not the site network.
#[derive(Debug, Clone)]
pub struct Gatekeeper {
    pub authenticator: Authenticator,
    /// Per (address, user name) pair.
    pub throttle: Throttle,
    /// Per address, with [`SOURCE_FREE_FAILURES`].
    pub sources: Throttle,
    /// Pairs that logged in recently (bounded by [`MAX_RECENT_LOGINS`], forgotten when full).
    recent_logins: std::collections::HashSet<String>,
}

/// Refusals one address may collect, over all the names it tries, before it must wait.
pub const SOURCE_FREE_FAILURES: u32 = 30;

/// (address, user) pairs remembered as having logged in.
pub const MAX_RECENT_LOGINS: usize = 100_000;

impl Gatekeeper {
    /// The default back-off for both counters.
    pub fn new(authenticator: Authenticator) -> Gatekeeper {
        Gatekeeper::with_policy(authenticator, BackoffPolicy::default())
    }

    /// `policy` per pair; the same with [`SOURCE_FREE_FAILURES`] per address.
    pub fn with_policy(authenticator: Authenticator, policy: BackoffPolicy) -> Gatekeeper {
        Gatekeeper {
            authenticator,
            throttle: Throttle::new(policy),
            sources: Throttle::new(BackoffPolicy {
                free_failures: SOURCE_FREE_FAILURES.max(policy.free_failures),
                ..policy
            }),
            recent_logins: std::collections::HashSet::new(),
        }
    }

    /// The key of one address trying one user name (no name: "anonymous").
    pub fn pair_key(source: std::net::IpAddr, username: Option<&str>) -> String {
        match username {
            Some(user) => format!(
                "{} {}",
                Throttle::address_key(source),
                Throttle::user_key(user)
            ),
            None => format!("{} anonymous", Throttle::address_key(source)),
        }
    }

    /// Checks the back-off of the (address, user) pair and of the address (unless the pair
    /// logged in recently), then the credentials, and counts a refusal against both. Loopback
    /// sources are never held back.
    pub fn admit(
        &mut self,
        source: std::net::IpAddr,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<Identity, Refusal> {
        if source.is_loopback() && self.throttle.policy.exempt_loopback {
            return self
                .authenticator
                .authenticate(client_id, username, password);
        }
        let pair = [Self::pair_key(source, username)];
        let address = [Throttle::address_key(source)];
        self.throttle.check(&pair, now)?;
        if !self.recent_logins.contains(&pair[0]) {
            self.sources.check(&address, now)?;
        }
        match self
            .authenticator
            .authenticate(client_id, username, password)
        {
            Ok(identity) => {
                self.throttle.record_success(&pair[0]);
                if self.recent_logins.len() >= MAX_RECENT_LOGINS {
                    self.recent_logins.clear();
                }
                self.recent_logins.insert(pair[0].clone());
                Ok(identity)
            }
            Err(refusal) => {
                self.throttle.record_failure(&pair, now);
                self.sources.record_failure(&address, now);
                Err(refusal)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn console_credentials_are_created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = ConsoleCredentials::load_or_create(&data).unwrap();
        assert!(first.username.starts_with("ota-console-"));
        assert_eq!(first.password.len(), 48);
        assert_eq!(mode(&data.join(CONSOLE_FILE)), 0o600);
        assert_eq!(ConsoleCredentials::load_or_create(&data).unwrap(), first);
        assert!(!format!("{first:?}").contains(&first.password));
        std::fs::write(
            data.join(CONSOLE_FILE),
            b"{\"username\":\"\",\"password\":\"x\"}",
        )
        .unwrap();
        assert!(ConsoleCredentials::load_or_create(&data).is_err());
        std::fs::write(data.join(CONSOLE_FILE), b"junk").unwrap();
        let err = ConsoleCredentials::load_or_create(&data).unwrap_err();
        assert!(err.to_string().contains(CONSOLE_FILE), "{err}");
    }

    #[test]
    fn the_alibaba_export_is_read_with_bom_case_and_extra_columns() {
        let csv = "\u{FEFF}deviceName,PRODUCTKEY,Status,devicesecret,Nickname\n\
                   pump-7,a1pk,ONLINE,sec7,\"Pump, seven\"\n\
                   \n\
                   pump-8 , a1pk ,OFFLINE, sec8 ,\n";
        let table = SecretTable::from_csv(csv.as_bytes(), "export.csv").unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(table.secret("a1pk", "pump-7"), Some("sec7"));
        assert_eq!(table.secret("a1pk", "pump-8"), Some("sec8"));
        assert_eq!(table.secret("a1pk", "pump-9"), None);
        let back = SecretTable::from_csv(&table.to_csv(), "again").unwrap();
        assert_eq!(back, table);
        assert!(!format!("{table:?}").contains("sec7"));
    }

    #[test]
    fn bad_rows_are_refused_with_their_line() {
        let head = "ProductKey,DeviceName,DeviceSecret\n";
        for (body, line, needle) in [
            ("a1pk,pump-7,s\na1pk,,s\n", 3, "DeviceName"),
            ("a1pk,pump-7\n", 2, "DeviceSecret"),
            ("a1pk,pump/7,s\n", 2, "not allowed"),
            ("a1pk,pump-7,s\nx,y,z\na1pk,pump-7,other\n", 4, "twice"),
            ("a+pk,pump-7,s\n", 2, "not allowed"),
        ] {
            let err =
                SecretTable::from_csv(format!("{head}{body}").as_bytes(), "f.csv").unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with(&format!("f.csv line {line}:")), "{text}");
            assert!(text.contains(needle), "{text}");
        }
        let err = SecretTable::from_csv(b"ProductKey,DeviceName\na,b\n", "f.csv").unwrap_err();
        assert!(err.to_string().contains("DeviceSecret"), "{err}");
        // A duplicate with the same secret is harmless.
        assert_eq!(
            SecretTable::from_csv(format!("{head}a,b,s\na,b,s\n").as_bytes(), "f")
                .unwrap()
                .len(),
            1
        );
        assert!(SecretTable::from_csv(b"", "f").is_err());
    }

    #[test]
    fn an_import_merges_into_the_private_table() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = dir.path().join("one.csv");
        std::fs::write(
            &first,
            "ProductKey,DeviceName,DeviceSecret\na1pk,d1,s1\na1pk,d2,s2\n",
        )
        .unwrap();
        assert_eq!(SecretTable::import(&data, &first).unwrap(), 2);
        let second = dir.path().join("two.csv");
        std::fs::write(&second, "ProductKey,DeviceName,DeviceSecret\na1pk,d2,new\n").unwrap();
        assert_eq!(SecretTable::import(&data, &second).unwrap(), 1);
        assert_eq!(mode(&data.join(SECRETS_FILE)), 0o600);
        let table = SecretTable::load(&data).unwrap();
        assert_eq!(
            (table.secret("a1pk", "d1"), table.secret("a1pk", "d2")),
            (Some("s1"), Some("new"))
        );
        // A bad file changes nothing.
        std::fs::write(&second, "ProductKey,DeviceName,DeviceSecret\na1pk,,x\n").unwrap();
        assert!(SecretTable::import(&data, &second).is_err());
        assert_eq!(SecretTable::load(&data).unwrap(), table);
    }

    const USERS: &str = "# sites\n\
        dock-1\tpw-dock  dji:DOCK1\n\
        \n\
        lab pw-lab fogcloud:pk/gw1 fogcloud:pk/gw2#mcu\n\
        thing pw-thing aws:pump-7\n";

    #[test]
    fn the_user_file_gives_devices_sites_and_things() {
        let users = UserTable::parse(USERS, "u").unwrap();
        assert_eq!(
            users.get("dock-1").unwrap().identity,
            Identity::Device("dji:DOCK1".parse().unwrap())
        );
        match &users.get("lab").unwrap().identity {
            Identity::Site { name, devices } => {
                assert_eq!(name, "lab");
                assert_eq!(devices.len(), 2);
                assert!(devices.contains(&"fogcloud:pk/gw2".parse().unwrap()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            users.get("thing").unwrap().identity,
            Identity::Device("aws:pump-7".parse().unwrap())
        );
        for (text, line) in [
            ("a pw\n", 1),
            ("# c\na\n", 2),
            ("a pw dji:X\na pw2 dji:Y\n", 2),
            ("a:b pw dji:X\n", 1),
            ("a pw dji:X/Y\n", 1),
            ("a pw mqtt:X\n", 1),
            ("a pw aws:a/b\n", 1),
        ] {
            let err = UserTable::parse(text, "u").unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("u line {line}:")),
                "{text:?}: {err}"
            );
        }
    }

    fn authenticator() -> Authenticator {
        Authenticator {
            console: ConsoleCredentials {
                username: "ota-console-1".into(),
                password: "console-pw".into(),
            },
            secrets: SecretTable::from_csv(b"ProductKey,DeviceName,DeviceSecret\na1TestPk01,pump-7,Zx9sEcReT0123456789abcdefABCDEF0\n", "t").unwrap(),
            users: UserTable::parse(USERS, "u").unwrap(),
        }
    }

    const SDK_CID: &str = "a1TestPk01&pump-7|securemode=2,signmethod=hmacsha1,ext=1,_ss=1,lan=Python,_v=1.2.13,timestamp=1764590000|";
    const SDK_PW: &[u8] = b"d0b20aa7a71066bd21bbba4acd100a06bc4f12e8";

    #[test]
    fn authenticate_checks_each_kind_of_credentials() {
        let auth = authenticator();
        assert_eq!(
            auth.authenticate("any", Some("ota-console-1"), Some(b"console-pw")),
            Ok(Identity::Console)
        );
        assert_eq!(
            auth.authenticate("any", Some("ota-console-1"), Some(b"console-pX")),
            Err(Refusal::WrongPassword("ota-console-1".into()))
        );
        assert_eq!(
            auth.authenticate(SDK_CID, Some("pump-7&a1TestPk01"), Some(SDK_PW)),
            Ok(Identity::Device(
                "aliyun:a1TestPk01/pump-7".parse().unwrap()
            ))
        );
        assert!(matches!(
            auth.authenticate(SDK_CID, Some("pump-8&a1TestPk01"), Some(SDK_PW)),
            Err(Refusal::BadSignature {
                why: SignError::Mismatch,
                ..
            })
        ));
        assert_eq!(
            auth.authenticate("c", Some("dock-1"), Some(b"pw-dock")),
            Ok(Identity::Device("dji:DOCK1".parse().unwrap()))
        );
        assert_eq!(
            auth.authenticate("c", Some("dock-1"), Some(b"pw-lab")),
            Err(Refusal::WrongPassword("dock-1".into()))
        );
        assert_eq!(
            auth.authenticate("c", Some("nobody"), Some(b"pw-lab")),
            Err(Refusal::UnknownUser("nobody".into()))
        );
        assert_eq!(
            auth.authenticate("c", None, None),
            Err(Refusal::NoCredentials)
        );
        assert_eq!(
            auth.authenticate("c", Some("dock-1"), None),
            Err(Refusal::NoCredentials)
        );
        // A password that is a prefix or an extension of the right one.
        assert!(
            auth.authenticate("c", Some("dock-1"), Some(b"pw-doc"))
                .is_err()
        );
        assert!(
            auth.authenticate("c", Some("dock-1"), Some(b"pw-dockk"))
                .is_err()
        );
        // A user-table entry wins over a signed-looking client id for its own user name.
        assert!(
            auth.authenticate("x|signmethod=hmacsha1|", Some("dock-1"), Some(b"pw-dock"))
                .is_ok()
        );
    }

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn refusals_back_off_per_source_with_growing_waits() {
        let policy = BackoffPolicy {
            free_failures: 3,
            first_block: Duration::from_secs(1),
            max_block: Duration::from_secs(8),
            forget_after: Duration::from_secs(100),
            max_tracked: 100,
            exempt_loopback: true,
        };
        let mut th = Throttle::new(policy);
        let a = vec!["address 10.0.0.9".to_owned()];
        for i in 0..3 {
            assert!(th.check(&a, t(i)).is_ok());
            th.record_failure(&a, t(i));
        }
        // Three free refusals; the fourth blocks 1 s, then 2, 4, 8, 8.
        assert!(th.check(&a, t(3)).is_ok());
        let mut waits = Vec::new();
        let mut now = 10_000;
        for _ in 0..5 {
            th.record_failure(&a, t(now));
            match th.check(&a, t(now)) {
                Err(Refusal::Throttled { retry_after, key }) => {
                    assert_eq!(key, a[0]);
                    waits.push(retry_after.as_secs());
                    now += ms(retry_after);
                }
                other => panic!("{other:?}"),
            }
            assert!(th.check(&a, t(now)).is_ok(), "the wait ends");
        }
        assert_eq!(waits, [1, 2, 4, 8, 8]);
        // Another source is not affected.
        assert!(th.check(&["address 10.0.0.10".to_owned()], t(now)).is_ok());
        // Quiet for longer than forget_after: three free refusals again.
        now += 101_000;
        for _ in 0..3 {
            th.record_failure(&a, t(now));
        }
        assert!(th.check(&a, t(now)).is_ok());
    }

    #[test]
    fn the_gatekeeper_holds_back_a_guesser_without_locking_out_the_device_or_its_neighbours() {
        let policy = BackoffPolicy {
            free_failures: 2,
            ..BackoffPolicy::default()
        };
        let mut gate = Gatekeeper::with_policy(authenticator(), policy);
        let guesser: std::net::IpAddr = "10.0.0.66".parse().unwrap();
        let honest: std::net::IpAddr = "10.0.0.7".parse().unwrap();
        for i in 0..3 {
            assert!(
                gate.admit(guesser, "c", Some("dock-1"), Some(b"guess"), t(i))
                    .is_err()
            );
        }
        // The guesser waits on the name it guessed, even with the right password…
        assert!(matches!(
            gate.admit(guesser, "c", Some("dock-1"), Some(b"pw-dock"), t(3)),
            Err(Refusal::Throttled { .. })
        ));
        // …but the dock itself, elsewhere, is not locked out by a stranger's guesses,
        assert!(
            gate.admit(honest, "c", Some("dock-1"), Some(b"pw-dock"), t(4))
                .is_ok()
        );
        // and another user behind the guesser's address (a NAT, the console's own machine)
        // gets in.
        assert!(
            gate.admit(guesser, "c", Some("lab"), Some(b"pw-lab"), t(5))
                .is_ok()
        );
        // After the wait the right password gets in and clears the pair's count.
        assert!(
            gate.admit(guesser, "c", Some("dock-1"), Some(b"pw-dock"), t(2_000))
                .is_ok()
        );
        let pair = [Gatekeeper::pair_key(guesser, Some("dock-1"))];
        assert!(gate.throttle.check(&pair, t(2_000)).is_ok());
        // One address trying many names is held back as a whole, for names that have not
        // logged in from there before…
        let site_nat: std::net::IpAddr = "10.0.0.99".parse().unwrap();
        assert!(
            gate.admit(site_nat, "c", Some("dock-1"), Some(b"pw-dock"), t(2_900))
                .is_ok()
        );
        for i in 0..u64::from(SOURCE_FREE_FAILURES) + 1 {
            let name = format!("user-{i}");
            let _ = gate.admit(site_nat, "c", Some(&name), Some(b"x"), t(3_000 + i));
        }
        assert!(matches!(
            gate.admit(site_nat, "c", Some("lab"), Some(b"pw-lab"), t(3_100)),
            Err(Refusal::Throttled { .. })
        ));
        // …while the dock that logged in from behind the same NAT keeps getting in.
        assert!(
            gate.admit(site_nat, "c", Some("dock-1"), Some(b"pw-dock"), t(3_101))
                .is_ok()
        );
        // This machine is never held back (the console's own link).
        let local: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        for i in 0..50 {
            let _ = gate.admit(local, "c", Some("lab"), Some(b"guess"), t(4_000 + i));
        }
        assert!(
            gate.admit(local, "c", Some("lab"), Some(b"pw-lab"), t(4_100))
                .is_ok()
        );
    }

    #[test]
    fn a_flood_of_sources_stays_bounded() {
        let mut th = Throttle::new(BackoffPolicy {
            max_tracked: 50,
            ..BackoffPolicy::default()
        });
        for i in 0..1_000u64 {
            th.record_failure(&[format!("address {i}")], t(i));
        }
        assert!(th.tracked() <= 50);
        // The newest sources are the ones kept.
        th.record_failure(&["address 999".to_owned()], t(1_000));
        assert!(th.tracked() <= 50);
    }
}
