//! How simulated devices log in to a secured broker, as real ones do: an Alibaba device signs
//! its CONNECT with its device secret (the Link Kit scheme: client id
//! `{pk}&{dn}|securemode=3,signmethod=hmacsha256,timestamp=T|`, user name `{dn}&{pk}`, password
//! the hex HMAC-SHA256 of `clientId{pk}&{dn}deviceName{dn}productKey{pk}timestamp{T}`); a
//! FogCloud device or gateway and a DJI dock send the user name and password of the
//! `mqtt-users.txt` line that covers them.
//!
//! Owns: reading a data directory's credential files for the simulated devices, and adding the
//! missing ones (`ota-console sim --provision DIR`). The signature is computed here, not with
//! `crate::access::alibaba_sign`: the simulator is an independent implementation, so that it
//! catches the console's misreadings instead of echoing them.

use std::path::Path;

use hmac::{KeyInit, Mac};

use crate::access::credentials::{CredentialsError, SecretTable, UserTable};
use crate::access::rules::Identity;
use crate::device_id::{DeviceId, DeviceIdError};

use super::SimConfig;

/// What one simulated connection sends in its CONNECT.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Login {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// The credentials simulated devices log in with (none: an open broker).
#[derive(Debug, Clone, Default)]
pub struct SimLogins {
    secrets: SecretTable,
    users: UserTable,
}

/// Why the simulator's credentials could not be read or provisioned.
#[derive(Debug, thiserror::Error)]
pub enum SimLoginError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("a simulated device name is not a valid device id: {0}")]
    DeviceName(#[from] DeviceIdError),
}

impl SimLogins {
    /// The credentials a data directory holds for devices (the files the broker checks).
    pub fn load(data_dir: &Path) -> Result<SimLogins, SimLoginError> {
        Ok(SimLogins {
            secrets: SecretTable::load(data_dir)?,
            users: UserTable::load(data_dir)?,
        })
    }

    /// Gives every connecting device of `cfg` that has no credentials in `data_dir` fresh ones
    /// (an Alibaba secret; a user per FogCloud device or gateway; a user per DJI dock that
    /// also names its drone, whose state and osd the dock publishes), writes them to the
    /// files, and returns the credentials with how many were added. With
    /// [`SimConfig::per_connection`] above 1, each shared connection gets one site user naming
    /// every device on it instead (Alibaba devices still get a secret each).
    pub fn provision(
        data_dir: &Path,
        cfg: &SimConfig,
    ) -> Result<(SimLogins, usize), SimLoginError> {
        let mut logins = SimLogins::load(data_dir)?;
        let mut added = 0;
        let mut secrets_changed = false;
        for i in 0..cfg.aliyun {
            let dn = cfg.aliyun_name(i);
            if logins.secrets.secret(&cfg.product_key, &dn).is_none() {
                logins
                    .secrets
                    .insert(&cfg.product_key, &dn, &random_hex(16))?;
                secrets_changed = true;
                added += 1;
            }
        }
        if secrets_changed {
            logins.secrets.save(data_dir)?;
        }
        // Per kind of unit (plain FogCloud devices, gateways, docks), each unit with the
        // devices it speaks for, grouped as the fleet shares connections.
        let mut fog = Vec::new();
        for i in 0..cfg.fogcloud {
            fog.push(vec![DeviceId::fogcloud(
                &cfg.product_key,
                &cfg.fogcloud_name(i),
            )?]);
        }
        let mut gateways = Vec::new();
        for i in 0..cfg.fogcloud_gateways {
            gateways.push(vec![DeviceId::fogcloud(
                &cfg.product_key,
                &cfg.gateway_name(i),
            )?]);
        }
        let mut docks = Vec::new();
        for i in 0..cfg.dji_docks {
            docks.push(vec![
                DeviceId::dji(&cfg.dock_sn(i))?,
                DeviceId::dji(&cfg.drone_sn(i))?,
            ]);
        }
        for units in [fog, gateways, docks] {
            for group in units.chunks(cfg.per_connection.max(1)) {
                let devices: Vec<DeviceId> = group.iter().flatten().cloned().collect();
                let Some(first) = devices.first() else {
                    continue;
                };
                let username = if group.len() == 1 {
                    if logins.users.user_for(first).is_some() {
                        continue;
                    }
                    user_name_for(first)
                } else {
                    // A shared connection: one site user listing every device on it.
                    if logins.covering(&devices).is_some() {
                        continue;
                    }
                    format!("site-{}-{}", user_name_for(first), group.len())
                };
                let identities: Vec<String> = devices.iter().map(ToString::to_string).collect();
                logins.users =
                    UserTable::add_user(data_dir, &username, &random_hex(16), &identities)?;
                added += 1;
            }
        }
        Ok((logins, added))
    }

    /// Whether an Alibaba device has a secret, and so signs its own login on its own connection.
    pub(crate) fn has_aliyun_secret(&self, pk: &str, dn: &str) -> bool {
        self.secrets.secret(pk, dn).is_some()
    }

    /// The user line that covers exactly a connection carrying all of `devices`: a site
    /// listing each of them, or for one device its own line.
    fn covering(&self, devices: &[DeviceId]) -> Option<&crate::access::credentials::UserEntry> {
        let wanted: Vec<DeviceId> = devices.iter().map(DeviceId::device).collect();
        if let [one] = wanted.as_slice()
            && let Some(own) = self.users.user_for(one)
        {
            return Some(own);
        }
        self.users.entries().find(|e| {
            matches!(&e.identity, Identity::Site { devices: listed, .. }
                if wanted.iter().all(|d| listed.contains(d)))
        })
    }

    /// What a shared connection carrying `devices` sends: the site user listing all of them,
    /// if any (otherwise none, and a secured broker refuses it, which the fleet's stats show).
    pub(crate) fn site_login(&self, devices: &[DeviceId], client_id: String) -> Login {
        match self.covering(devices) {
            Some(user) => Login {
                client_id,
                username: Some(user.username.clone()),
                password: Some(user.password.clone()),
            },
            None => Login::plain(client_id),
        }
    }

    /// What an Alibaba device sends: a signed login when its secret is known.
    pub(crate) fn aliyun_login(&self, pk: &str, dn: &str, plain_client_id: String) -> Login {
        match self.secrets.secret(pk, dn) {
            Some(secret) => alibaba_login(pk, dn, secret, super::now_millis()),
            None => Login::plain(plain_client_id),
        }
    }

    /// What a device holding its connection with a user name sends (a FogCloud device or
    /// gateway, a DJI dock): the `mqtt-users.txt` line that covers it, if any.
    pub(crate) fn user_login(&self, id: &DeviceId, plain_client_id: String) -> Login {
        match self.users.user_for(id) {
            Some(user) => Login {
                client_id: plain_client_id,
                username: Some(user.username.clone()),
                password: Some(user.password.clone()),
            },
            None => Login::plain(plain_client_id),
        }
    }
}

impl Login {
    fn plain(client_id: String) -> Login {
        Login {
            client_id,
            username: None,
            password: None,
        }
    }
}

/// Link Kit's signed login over plain TCP (`securemode=3`).
fn alibaba_login(pk: &str, dn: &str, secret: &str, timestamp: u64) -> Login {
    let cid = format!("{pk}&{dn}");
    let content = format!("clientId{cid}deviceName{dn}productKey{pk}timestamp{timestamp}");
    let password = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(content.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; keep the device going with a login the broker refuses.
        Err(_) => String::new(),
    };
    Login {
        client_id: format!("{cid}|securemode=3,signmethod=hmacsha256,timestamp={timestamp}|"),
        username: Some(format!("{dn}&{pk}")),
        password: Some(password),
    }
}

/// A user name for a device's own line: its id with `:` and `/` made `-` (the file forbids `:`).
fn user_name_for(device: &DeviceId) -> String {
    device
        .to_string()
        .chars()
        .map(|c| if c == ':' || c == '/' { '-' } else { c })
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::credentials::Authenticator;

    fn fleet() -> SimConfig {
        SimConfig {
            aliyun: 2,
            fogcloud: 1,
            fogcloud_gateways: 1,
            subs_per_gateway: 2,
            dji_docks: 1,
            ..SimConfig::default()
        }
    }

    #[test]
    fn provisioned_logins_pass_the_consoles_checks_and_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = fleet();
        let (logins, added) = SimLogins::provision(dir.path(), &cfg).unwrap();
        assert_eq!(added, 2 + 1 + 1 + 1);
        let auth = Authenticator::load(dir.path()).unwrap();
        let check = |login: Login| {
            auth.authenticate(
                &login.client_id,
                login.username.as_deref(),
                login.password.as_deref().map(str::as_bytes),
            )
        };
        let dn = cfg.aliyun_name(1);
        let ali = DeviceId::aliyun(&cfg.product_key, &dn).unwrap();
        let login = logins.aliyun_login(&cfg.product_key, &dn, "plain".into());
        assert_eq!(check(login).unwrap(), Identity::Device(ali));
        let gw = DeviceId::fogcloud(&cfg.product_key, &cfg.gateway_name(0)).unwrap();
        let login = logins.user_login(&gw, "plain".into());
        assert_eq!(check(login).unwrap(), Identity::Device(gw));
        let dock = DeviceId::dji(&cfg.dock_sn(0)).unwrap();
        match check(logins.user_login(&dock, "plain".into())).unwrap() {
            Identity::Site { devices, .. } => {
                assert!(devices.contains(&dock));
                assert!(devices.contains(&DeviceId::dji(&cfg.drone_sn(0)).unwrap()));
            }
            other => panic!("a dock speaks for its drone: {other:?}"),
        }
        // A second run adds nothing and keeps the same secrets.
        let (again, added) = SimLogins::provision(dir.path(), &cfg).unwrap();
        assert_eq!(added, 0);
        let id = DeviceId::fogcloud(&cfg.product_key, &cfg.fogcloud_name(0)).unwrap();
        assert_eq!(
            again.user_login(&id, "x".into()).password,
            logins.user_login(&id, "x".into()).password
        );
    }

    #[test]
    fn a_shared_connection_logs_in_as_one_site_user_naming_all_its_devices() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SimConfig {
            fogcloud: 3,
            dji_docks: 2,
            per_connection: 2,
            ..fleet()
        };
        let (logins, added) = SimLogins::provision(dir.path(), &cfg).unwrap();
        // 2 Alibaba secrets; FogCloud: a site of 2 and the third alone; gateways: alone;
        // docks: one site of both docks and their drones.
        assert_eq!(added, 2 + 2 + 1 + 1);
        let auth = Authenticator::load(dir.path()).unwrap();
        let fog = |i| DeviceId::fogcloud(&cfg.product_key, &cfg.fogcloud_name(i)).unwrap();
        let site = logins.site_login(&[fog(0), fog(1)], "sim-site-fog-0001".into());
        match auth
            .authenticate(
                &site.client_id,
                site.username.as_deref(),
                site.password.as_deref().map(str::as_bytes),
            )
            .unwrap()
        {
            Identity::Site { devices, .. } => {
                assert_eq!(devices.into_iter().collect::<Vec<_>>(), [fog(0), fog(1)]);
            }
            other => panic!("a shared connection is a site: {other:?}"),
        }
        let docks: Vec<DeviceId> = (0..2)
            .flat_map(|i| [cfg.dock_sn(i), cfg.drone_sn(i)])
            .map(|sn| DeviceId::dji(&sn).unwrap())
            .collect();
        let dock_site = logins.site_login(&docks, "sim-site-dock-0001".into());
        assert!(dock_site.username.is_some_and(|u| u.starts_with("site-")));
        // No line covers devices of two different connections: such a login carries none.
        let mixed = logins.site_login(&[fog(1), fog(2)], "x".into());
        assert_eq!(mixed.username, None);
        // The last FogCloud device, alone on its connection, has its own line.
        assert_eq!(
            auth.authenticate(
                "plain",
                logins
                    .user_login(&fog(2), "plain".into())
                    .username
                    .as_deref(),
                logins
                    .user_login(&fog(2), "plain".into())
                    .password
                    .as_deref()
                    .map(str::as_bytes),
            )
            .unwrap(),
            Identity::Device(fog(2))
        );
        // Alibaba devices keep their secrets (their signature is per device).
        assert!(logins.has_aliyun_secret(&cfg.product_key, &cfg.aliyun_name(1)));
        let (_, again) = SimLogins::provision(dir.path(), &cfg).unwrap();
        assert_eq!(again, 0, "a second run finds every site covered");
    }

    #[test]
    fn a_device_without_credentials_connects_plainly() {
        let logins = SimLogins::default();
        let login = logins.user_login(&DeviceId::dji("SN1").unwrap(), "SN1".into());
        assert_eq!(login.client_id, "SN1");
        assert_eq!(login.username, None);
        assert!(!format!("{login:?}").contains("secret"));
    }

    #[test]
    fn the_alibaba_signature_matches_link_kits_scheme() {
        // The console's verifier, fed by an independent signer: a wrong secret is refused.
        let login = alibaba_login("a1pk", "dev-1", "s3cret", 1_700_000_000_000);
        assert!(login.client_id.starts_with("a1pk&dev-1|securemode=3,"));
        let mut table = SecretTable::default();
        table.insert("a1pk", "dev-1", "other").unwrap();
        let auth = Authenticator {
            console: crate::access::credentials::ConsoleCredentials::generate(),
            secrets: table,
            users: UserTable::default(),
        };
        assert!(
            auth.authenticate(
                &login.client_id,
                login.username.as_deref(),
                login.password.as_deref().map(str::as_bytes),
            )
            .is_err()
        );
    }
}
