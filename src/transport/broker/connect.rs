//! The first packet of a connection: who the client is and the CONNECT rumqttd gets instead.
//!
//! Owns: [`Access`] (open, or the data directory's credentials and rules), re-reading the
//! credentials when one of their files changes (a `stat` of three files per CONNECT), the
//! admission of a CONNECT ([`admit`]: protocol level, credentials and back-off through
//! [`Gatekeeper`], the Will's topic through [`Rules`]) and its rewriting for rumqttd: the
//! internal login, and in secure mode the client id inside a namespace of the identity, so no
//! client can take over the console's or another identity's session. Must never: panic or
//! allocate without bound on a hostile CONNECT, or tell the client why it was refused beyond the
//! CONNACK code (the reason goes to the refusal event).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::FixedHeader;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Login};

use super::events::{Attempt, BrokerRefusal, now_ms};
use crate::access::credentials::{
    Authenticator, BackoffPolicy, CONSOLE_FILE, CredentialsError, Gatekeeper, Refusal,
    SECRETS_FILE, USERS_FILE,
};
use crate::access::rules::{Decision, Identity, RouteTable, Rules};
use crate::device_id::DeviceId;
use crate::i18n::tr;
use crate::rollout::Timestamp;

/// Who may use the broker, as the gate applies it.
pub(super) enum Access {
    Open,
    Secure(std::sync::Arc<SecureAccess>),
}

/// The credentials of a data directory, their back-off, and the topic rules.
pub(super) struct SecureAccess {
    data_dir: PathBuf,
    keeper: Mutex<Keeper>,
    rules: RwLock<Rules>,
    /// Bumped on every change of `rules`, so connections drop their cached decisions.
    rules_generation: AtomicU64,
}

struct Keeper {
    gatekeeper: Gatekeeper,
    stamp: FilesStamp,
}

/// What identifies the contents of the credentials files without reading them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FilesStamp([Option<(SystemTime, u64, u64)>; 3]);

impl FilesStamp {
    fn of(data_dir: &Path) -> FilesStamp {
        let stamp = |name: &str| {
            let meta = std::fs::metadata(data_dir.join(name)).ok()?;
            // The credentials are replaced by rename (new inode) or edited in place (new mtime,
            // usually a new length): any of the three tells a change.
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&meta);
            #[cfg(not(unix))]
            let inode = 0;
            Some((meta.modified().ok()?, meta.len(), inode))
        };
        FilesStamp([stamp(CONSOLE_FILE), stamp(SECRETS_FILE), stamp(USERS_FILE)])
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves consistent data here (plain values).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SecureAccess {
    /// Loads the credentials of `data_dir` (creating the console's on first use).
    pub(super) fn load(
        data_dir: PathBuf,
        routes: RouteTable,
    ) -> Result<std::sync::Arc<SecureAccess>, CredentialsError> {
        // Stamped before reading: an edit during the load is seen at the next CONNECT.
        let stamp = FilesStamp::of(&data_dir);
        let authenticator = Authenticator::load(&data_dir)?;
        Ok(std::sync::Arc::new(SecureAccess {
            data_dir,
            keeper: Mutex::new(Keeper {
                gatekeeper: Gatekeeper::new(authenticator),
                stamp,
            }),
            rules: RwLock::new(Rules::new(routes)),
            rules_generation: AtomicU64::new(0),
        }))
    }

    /// The credentials, re-read first if a file changed.
    fn current(&self) -> std::sync::MutexGuard<'_, Keeper> {
        let mut keeper = lock(&self.keeper);
        let stamp = FilesStamp::of(&self.data_dir);
        if stamp != keeper.stamp {
            match Authenticator::load(&self.data_dir) {
                Ok(authenticator) => {
                    keeper.gatekeeper.authenticator = authenticator;
                    tracing::info!(dir = %self.data_dir.display(), "broker credentials re-read");
                }
                // The previous credentials stay in force; the next change is tried again.
                Err(e) => {
                    tracing::error!(error = %e, "broker credentials not re-read, kept the previous ones")
                }
            }
            keeper.stamp = stamp;
        }
        keeper
    }

    /// Checks a login (re-reading the credentials first if a file changed).
    fn admit(
        &self,
        remote: SocketAddr,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<Identity, Refusal> {
        let mut keeper = self.current();
        let now = Timestamp::from_millis(u64::try_from(now_ms()).unwrap_or(0));
        keeper
            .gatekeeper
            .admit(remote.ip(), client_id, username, password, now)
    }

    /// Who a verified client certificate's name (its subject CN) makes the client: the user of
    /// `mqtt-users.txt` with that name, the console by its user name, or the device the name is
    /// the id of (an AWS thing is `aws:{thing}`, like any device id). The certificate's signature by the trusted CA is what
    /// grants it: the site CA issues one only when the operator asks (`broker-config
    /// --issue-cert`).
    pub(super) fn identity_of_certificate(&self, name: &str) -> Option<Identity> {
        let keeper = self.current();
        let auth = &keeper.gatekeeper.authenticator;
        if name == auth.console.username {
            return Some(Identity::Console);
        }
        if let Some(entry) = auth.users.get(name) {
            return Some(entry.identity.clone());
        }
        name.parse::<DeviceId>()
            .ok()
            .map(|id| Identity::Device(id.device()))
    }

    pub(super) fn set_backoff(&self, policy: BackoffPolicy) {
        let mut keeper = lock(&self.keeper);
        let authenticator = keeper.gatekeeper.authenticator.clone();
        keeper.gatekeeper = Gatekeeper::with_policy(authenticator, policy);
    }

    /// Records that `device` belongs to `gateway`. The first gateway a device is known under
    /// keeps it: a topology report is the gateway's own claim, so another gateway claiming a
    /// device already placed (a rogue dock naming a victim drone, to publish its version) is
    /// refused and logged; moving a drone to another dock takes the operator (a site user that
    /// names it, or `None` first).
    pub(super) fn set_gateway(&self, device: &DeviceId, gateway: Option<&DeviceId>) {
        let mut rules = self.rules.write().unwrap_or_else(|e| e.into_inner());
        let current = rules.gateway_of(device).cloned();
        match (gateway, &current) {
            (Some(claimed), Some(current)) if claimed.device() == *current => return,
            (Some(claimed), Some(current)) => {
                tracing::warn!(
                    device = %device.device(),
                    gateway = %current,
                    claimed_by = %claimed.device(),
                    "broker: a second gateway claimed a device; it stays with the first"
                );
                return;
            }
            (None, None) => return,
            _ => {}
        }
        rules.set_gateway(device, gateway);
        self.rules_generation.fetch_add(1, Ordering::Release);
    }

    pub(super) fn rules_generation(&self) -> u64 {
        self.rules_generation.load(Ordering::Acquire)
    }

    pub(super) fn may_publish(&self, identity: &Identity, topic: &str) -> Decision {
        self.rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .may_publish(identity, topic)
    }

    pub(super) fn may_subscribe(&self, identity: &Identity, filter: &str) -> Decision {
        self.rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .may_subscribe(identity, filter)
    }
}

/// A CONNECT that passed.
pub(super) struct Admitted {
    /// The CONNECT to send to rumqttd.
    pub(super) upstream_connect: BytesMut,
    /// Who the client is (`None` in open mode).
    pub(super) identity: Option<Identity>,
    pub(super) client_id: String,
    pub(super) username: Option<String>,
}

/// A CONNECT that did not pass: the CONNACK code to answer (none: just close) and the event.
pub(super) struct Denied {
    pub(super) connack: Option<ConnectReturnCode>,
    pub(super) refusal: Box<BrokerRefusal>,
}

/// The internal login of rumqttd.
pub(super) struct InternalLogin<'a> {
    pub(super) username: &'a str,
    pub(super) password: &'a str,
}

/// Longest client id, user name or password kept in an event.
const MAX_EVENT_TEXT: usize = 128;

fn clip(text: &str) -> String {
    text.chars().take(MAX_EVENT_TEXT).collect()
}

/// Decides on the first frame of a connection (already framed within `MAX_PACKET_BYTES`; its
/// type is CONNECT). `certificate` is the identity named by a client certificate the TLS
/// listener verified against its trusted CA, if any: in secure mode it stands for the login.
#[expect(
    clippy::too_many_lines,
    reason = "one decision over a CONNECT packet, each refusal in the order the checks run \
              (frame, protocol, identity, credentials, certificate), each with its logged reason"
)]
pub(super) fn admit(
    access: &Access,
    internal: InternalLogin<'_>,
    remote: SocketAddr,
    certificate: Option<&str>,
    header: FixedHeader,
    frame: Bytes,
) -> Result<Admitted, Denied> {
    let refusal = |client_id: &str,
                   username: Option<&str>,
                   identity: Option<&Identity>,
                   attempt: Attempt,
                   reason: String| {
        Box::new(BrokerRefusal {
            at_ms: now_ms(),
            remote,
            client_id: clip(client_id),
            username: username.map(clip),
            identity: identity.map(Identity::to_string),
            attempt,
            reason,
        })
    };
    match protocol_level(&frame) {
        Some(4) => {}
        Some(level) => {
            return Err(Denied {
                connack: Some(ConnectReturnCode::RefusedProtocolVersion),
                refusal: refusal(
                    "",
                    None,
                    None,
                    Attempt::Connect,
                    tr!("broker.refusal.protocol_level", level = level),
                ),
            });
        }
        None => {
            return Err(Denied {
                connack: None,
                refusal: refusal(
                    "",
                    None,
                    None,
                    Attempt::Connect,
                    tr!("broker.refusal.malformed_connect"),
                ),
            });
        }
    }
    let mut connect = Connect::read(header, frame).map_err(|e| Denied {
        connack: None,
        refusal: refusal(
            "",
            None,
            None,
            Attempt::Connect,
            tr!("broker.refusal.malformed_connect_why", why = e),
        ),
    })?;
    let client_id = connect.client_id.clone();
    let (username, password) = match &connect.login {
        Some(login) => (
            Some(login.username.clone()).filter(|u| !u.is_empty()),
            Some(login.password.clone()).filter(|p| !p.is_empty()),
        ),
        None => (None, None),
    };
    let identity = match access {
        Access::Open => None,
        Access::Secure(secure) => {
            if client_id.is_empty() && !connect.clean_session {
                return Err(Denied {
                    connack: Some(ConnectReturnCode::BadClientId),
                    refusal: refusal(
                        &client_id,
                        username.as_deref(),
                        None,
                        Attempt::Connect,
                        tr!("broker.refusal.empty_client_id"),
                    ),
                });
            }
            let by_certificate = certificate.and_then(|name| secure.identity_of_certificate(name));
            let identity = match by_certificate {
                Some(identity) => Ok(identity),
                None => secure.admit(
                    remote,
                    &client_id,
                    username.as_deref(),
                    password.as_deref().map(str::as_bytes),
                ),
            }
            .map_err(|why| Denied {
                connack: Some(connack_for(&why)),
                refusal: refusal(
                    &client_id,
                    username.as_deref(),
                    None,
                    Attempt::Connect,
                    why.to_string(),
                ),
            })?;
            if let Some(will) = &connect.last_will
                && let Decision::Deny(why) = secure.may_publish(&identity, &will.topic)
            {
                return Err(Denied {
                    connack: Some(ConnectReturnCode::NotAuthorized),
                    refusal: refusal(
                        &client_id,
                        username.as_deref(),
                        Some(&identity),
                        Attempt::Will {
                            topic: clip(&will.topic),
                        },
                        why.to_string(),
                    ),
                });
            }
            connect.client_id = namespaced_client_id(&identity, &client_id);
            Some(identity)
        }
    };
    connect.login = Some(Login::new(internal.username, internal.password));
    let mut upstream_connect = BytesMut::with_capacity(connect.size());
    connect.write(&mut upstream_connect).map_err(|e| Denied {
        connack: None,
        refusal: refusal(
            &client_id,
            username.as_deref(),
            identity.as_ref(),
            Attempt::Connect,
            tr!("broker.refusal.not_rewritten", why = e),
        ),
    })?;
    Ok(Admitted {
        upstream_connect,
        identity,
        client_id: clip(&client_id),
        username: username.as_deref().map(clip),
    })
}

/// Refused credentials answer 4 ("bad user name or password"); missing credentials and the
/// back-off answer 5 ("not authorized").
fn connack_for(refusal: &Refusal) -> ConnectReturnCode {
    match refusal {
        Refusal::NoCredentials | Refusal::Throttled { .. } => ConnectReturnCode::NotAuthorized,
        Refusal::UnknownUser(_) | Refusal::WrongPassword(_) | Refusal::BadSignature { .. } => {
            ConnectReturnCode::BadUserNamePassword
        }
    }
}

/// The client id rumqttd sees: the identity's namespace, then the client's own id (a fresh one
/// when it is empty, which MQTT allows with a clean session).
pub(super) fn namespaced_client_id(identity: &Identity, client_id: &str) -> String {
    let namespace = match identity {
        Identity::Console => "console".to_owned(),
        Identity::Device(id) => id.device().to_string(),
        Identity::Site { name, .. } => format!("site:{name}"),
    };
    let own = if client_id.is_empty() {
        format!("auto-{}", uuid::Uuid::new_v4().simple())
    } else {
        escape_client_id(client_id)
    };
    format!("{}|{own}", escape_client_id(&namespace))
}

/// rumqttd refuses client ids with `+`, `$`, `#` or `/` (device ids have `/`); percent-encoded
/// here, with `%` and the namespace separator `|`, so different ids stay different.
fn escape_client_id(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' | '|' | '+' | '$' | '#' | '/' => out.push_str(&format!("%{:02X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// The protocol level of a CONNECT frame, if its variable header is there to read.
fn protocol_level(frame: &[u8]) -> Option<u8> {
    // Fixed header: one byte, then 1 to 4 bytes of remaining length (continuation bit 0x80).
    let length_bytes = frame.iter().skip(1).take(4).position(|b| b & 0x80 == 0)? + 1;
    let body = frame.get(1 + length_bytes..)?;
    let name_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let name = body.get(2..2 + name_len)?;
    if name != b"MQTT" && name != b"MQIsdp" {
        return None;
    }
    body.get(2 + name_len).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::QoS;
    use rumqttc::mqttbytes::check;
    use rumqttc::mqttbytes::v4::LastWill;

    const INTERNAL: InternalLogin<'static> = InternalLogin {
        username: "gate-internal",
        password: "internal-pw",
    };

    fn frame_of(connect: &Connect) -> (FixedHeader, Bytes) {
        let mut buf = BytesMut::new();
        connect.write(&mut buf).unwrap();
        let header = check(buf.iter(), 1 << 20).unwrap();
        (header, buf.freeze())
    }

    fn remote() -> SocketAddr {
        "10.1.2.3:4567".parse().unwrap()
    }

    fn secure(dir: &Path) -> Access {
        std::fs::write(dir.join(USERS_FILE), "dock pw-dock dji:DOCK1\n").unwrap();
        Access::Secure(
            SecureAccess::load(dir.to_path_buf(), crate::protocol::registry::topic_routes())
                .unwrap(),
        )
    }

    fn reparse(bytes: &BytesMut) -> Connect {
        let header = check(bytes.iter(), 1 << 20).unwrap();
        Connect::read(header, Bytes::copy_from_slice(bytes)).unwrap()
    }

    #[test]
    fn open_mode_only_swaps_the_login() {
        let mut connect = Connect::new("dev-1");
        connect.clean_session = false;
        connect.keep_alive = 33;
        connect.set_login("anyone", "anything");
        connect.last_will = Some(LastWill::new("a/b", "bye", QoS::AtLeastOnce, true));
        let (h, f) = frame_of(&connect);
        let ok = admit(&Access::Open, INTERNAL, remote(), None, h, f)
            .map_err(|d| d.refusal)
            .unwrap();
        let up = reparse(&ok.upstream_connect);
        assert_eq!(up.client_id, "dev-1");
        assert_eq!(up.login, Some(Login::new("gate-internal", "internal-pw")));
        assert_eq!((up.keep_alive, up.clean_session), (33, false));
        assert_eq!(up.last_will, connect.last_will);
        assert_eq!(ok.identity, None);
        assert_eq!(ok.username.as_deref(), Some("anyone"));
    }

    #[test]
    fn secure_mode_namespaces_the_client_id_and_refuses_with_codes() {
        let dir = tempfile::tempdir().unwrap();
        let access = secure(dir.path());
        let mut connect = Connect::new("dock-client");
        connect.set_login("dock", "pw-dock");
        let (h, f) = frame_of(&connect);
        let ok = admit(&access, INTERNAL, remote(), None, h, f)
            .map_err(|d| d.refusal)
            .unwrap();
        assert_eq!(
            reparse(&ok.upstream_connect).client_id,
            "dji:DOCK1|dock-client"
        );
        assert_eq!(
            ok.identity,
            Some(Identity::Device("dji:DOCK1".parse().unwrap()))
        );

        for (login, code) in [
            (None, ConnectReturnCode::NotAuthorized),
            (
                Some(("dock", "wrong")),
                ConnectReturnCode::BadUserNamePassword,
            ),
            (
                Some(("nobody", "pw")),
                ConnectReturnCode::BadUserNamePassword,
            ),
        ] {
            let mut c = Connect::new("x");
            if let Some((u, p)) = login {
                c.set_login(u, p);
            }
            let (h, f) = frame_of(&c);
            let Err(denied) = admit(&access, INTERNAL, remote(), None, h, f) else {
                panic!("{login:?} admitted");
            };
            assert_eq!(denied.connack, Some(code), "{login:?}");
            assert_eq!(denied.refusal.attempt, Attempt::Connect);
        }

        // A Will on another device's topic.
        let mut c = Connect::new("dock-client");
        c.set_login("dock", "pw-dock");
        c.last_will = Some(LastWill::new(
            "thing/product/DOCK2/events",
            "x",
            QoS::AtMostOnce,
            false,
        ));
        let (h, f) = frame_of(&c);
        let Err(denied) = admit(&access, INTERNAL, remote(), None, h, f) else {
            panic!("forbidden Will admitted");
        };
        assert_eq!(denied.connack, Some(ConnectReturnCode::NotAuthorized));
        assert!(matches!(denied.refusal.attempt, Attempt::Will { .. }));
        assert!(
            denied.refusal.reason.contains("another device"),
            "{}",
            denied.refusal.reason
        );

        // Empty client ids get a fresh id with a clean session, a refusal without one.
        let mut c = Connect::new("");
        c.set_login("dock", "pw-dock");
        let (h, f) = frame_of(&c);
        let ok = admit(&access, INTERNAL, remote(), None, h, f)
            .map_err(|d| d.refusal)
            .unwrap();
        assert!(
            reparse(&ok.upstream_connect)
                .client_id
                .starts_with("dji:DOCK1|auto-")
        );
        c.clean_session = false;
        let (h, f) = frame_of(&c);
        let Err(denied) = admit(&access, INTERNAL, remote(), None, h, f) else {
            panic!("empty persistent client id admitted");
        };
        assert_eq!(denied.connack, Some(ConnectReturnCode::BadClientId));
    }

    #[test]
    fn other_protocol_levels_are_refused_with_code_1() {
        let mut bytes = BytesMut::new();
        Connect::new("x").write(&mut bytes).unwrap();
        // Level byte: fixed header (2) + name length (2) + "MQTT" (4).
        bytes[8] = 5;
        let h = check(bytes.iter(), 1 << 20).unwrap();
        let Err(denied) = admit(&Access::Open, INTERNAL, remote(), None, h, bytes.freeze()) else {
            panic!("MQTT 5 admitted");
        };
        assert_eq!(
            denied.connack,
            Some(ConnectReturnCode::RefusedProtocolVersion)
        );
        assert_eq!(protocol_level(b"\x10\x01"), None);
        assert_eq!(protocol_level(b"\x10\xff\xff\xff\xff\xff"), None);
        assert_eq!(protocol_level(b"\x10\x07\x00\x04HTTP\x04"), None);
        assert_eq!(protocol_level(b"\x10\x09\x00\x06MQIsdp\x03"), Some(3));
    }

    #[test]
    fn credentials_are_re_read_when_a_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let Access::Secure(access) = secure(dir.path()) else {
            unreachable!()
        };
        assert!(
            access
                .admit(remote(), "c", Some("lab"), Some(b"pw-lab"))
                .is_err()
        );
        std::fs::write(
            dir.path().join(USERS_FILE),
            "dock pw-dock dji:DOCK1\nlab pw-lab fogcloud:pk/gw\n",
        )
        .unwrap();
        assert!(
            access
                .admit(remote(), "c", Some("lab"), Some(b"pw-lab"))
                .is_ok()
        );
        // A broken file keeps the previous credentials.
        std::fs::write(dir.path().join(USERS_FILE), "lab\n").unwrap();
        assert!(
            access
                .admit(remote(), "c", Some("lab"), Some(b"pw-lab"))
                .is_ok()
        );
    }
}
