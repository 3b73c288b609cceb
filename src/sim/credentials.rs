//! How simulated devices log in to a secured broker, as real ones do: a unit whose dialect
//! signs logins with a per-device secret (its factory says [`Credential::Secret`]) signs its
//! CONNECT itself (the scheme is its dialect's, in `protocol/<dialect>/sim.rs`); the others send
//! the user name and password of the `mqtt-users.txt` line that covers them
//! ([`Credential::User`]).
//!
//! Owns: reading a data directory's credential files for the simulated devices and choosing
//! what each connection sends. Adding the missing ones (`ota-console sim --provision DIR`) is
//! `provision.rs`.

use std::path::Path;

use crate::access::credentials::{CredentialsError, SecretTable, UserTable};
use crate::access::rules::Identity;
use crate::device_id::{DeviceId, DeviceIdError};

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
    pub(super) secrets: SecretTable,
    pub(super) users: UserTable,
}

/// Why the simulator's credentials could not be read or provisioned.
#[derive(Debug, thiserror::Error)]
pub enum SimLoginError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("{}", crate::i18n::tr!("sim.bad_device_name", why = _0))]
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

    /// The secret of the device `(product key, name)`, if it has one (it then signs its own
    /// login on a connection of its own).
    pub(crate) fn secret(&self, product_key: &str, name: &str) -> Option<&str> {
        self.secrets.secret(product_key, name)
    }

    /// The user line that covers exactly a connection carrying all of `devices`: a site
    /// listing each of them, or for one device its own line.
    pub(super) fn covering(
        &self,
        devices: &[DeviceId],
    ) -> Option<&crate::access::credentials::UserEntry> {
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

    /// What a unit holding its connection with a user name sends: the `mqtt-users.txt` line
    /// that covers it, if any.
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
    /// A login without credentials (an open broker refuses nobody).
    pub(crate) fn plain(client_id: String) -> Login {
        Login {
            client_id,
            username: None,
            password: None,
        }
    }
}

/// A user name for a device's own line: its id with `:` and `/` made `-` (the file forbids `:`).
pub(super) fn user_name_for(device: &DeviceId) -> String {
    device
        .to_string()
        .chars()
        .map(|c| if c == ':' || c == '/' { '-' } else { c })
        .collect()
}

pub(super) fn random_hex(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::credentials::Authenticator;
    use crate::sim::unit::tests::{FACTORY, HUBS, SIGNED, id};
    use crate::sim::{SimConfig, UnitSpec};

    fn fleet(signed: usize, hubs: usize, per_connection: usize) -> SimConfig {
        SimConfig {
            units: vec![
                UnitSpec::new(&FACTORY, &SIGNED, signed),
                UnitSpec::new(&FACTORY, &HUBS, hubs),
            ],
            per_connection,
            ..SimConfig::default()
        }
    }

    fn check(auth: &Authenticator, login: &Login) -> Identity {
        auth.authenticate(
            &login.client_id,
            login.username.as_deref(),
            login.password.as_deref().map(str::as_bytes),
        )
        .unwrap()
    }

    #[test]
    fn provisioned_logins_pass_the_consoles_checks_and_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = fleet(2, 2, 1);
        let (logins, added) = SimLogins::provision(dir.path(), &cfg).unwrap();
        assert_eq!(added, 2 + 2);
        let name = cfg.unit_name("ts", 1);
        assert!(logins.secret(&cfg.product_key, &name).is_some());
        let auth = Authenticator::load(dir.path()).unwrap();
        // A unit speaking for its members gets one line naming all of them.
        let hub = id(&cfg, &cfg.unit_name("th", 0));
        match check(&auth, &logins.user_login(&hub, "plain".into())) {
            Identity::Site { devices, .. } => {
                assert!(devices.contains(&hub));
                assert!(devices.contains(&id(&cfg, &cfg.member_name("th", 0, 1))));
            }
            other => panic!("a hub speaks for its members: {other:?}"),
        }
        // A second run adds nothing and keeps the same secrets.
        let (again, added) = SimLogins::provision(dir.path(), &cfg).unwrap();
        assert_eq!(added, 0);
        assert_eq!(
            again.secret(&cfg.product_key, &name),
            logins.secret(&cfg.product_key, &name)
        );
        assert_eq!(
            again.user_login(&hub, "x".into()).password,
            logins.user_login(&hub, "x".into()).password
        );
    }

    #[test]
    fn a_shared_connection_logs_in_as_one_site_user_naming_all_its_devices() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = fleet(2, 3, 2);
        let (logins, added) = SimLogins::provision(dir.path(), &cfg).unwrap();
        // 2 secrets (signed units never share); hubs: a site of 2 and the third alone.
        assert_eq!(added, 2 + 1 + 1);
        let auth = Authenticator::load(dir.path()).unwrap();
        let devices = |hub: usize| {
            let mut d = vec![id(&cfg, &cfg.unit_name("th", hub))];
            d.extend((0..2).map(|m| id(&cfg, &cfg.member_name("th", hub, m))));
            d
        };
        let first_two: Vec<DeviceId> = devices(0).into_iter().chain(devices(1)).collect();
        let site = logins.site_login(&first_two, "sim-site-th-0001".into());
        assert!(
            site.username
                .as_deref()
                .is_some_and(|u| u.starts_with("site-"))
        );
        match check(&auth, &site) {
            Identity::Site {
                devices: listed, ..
            } => {
                assert!(first_two.iter().all(|d| listed.contains(d)));
            }
            other => panic!("a shared connection is a site: {other:?}"),
        }
        // No line covers devices of two different connections: such a login carries none.
        let mixed: Vec<DeviceId> = devices(1).into_iter().chain(devices(2)).collect();
        assert_eq!(logins.site_login(&mixed, "x".into()).username, None);
        // The last hub, alone on its connection, has its own line.
        let third = devices(2)[0].clone();
        assert!(matches!(
            check(&auth, &logins.user_login(&third, "plain".into())),
            Identity::Site { .. }
        ));
        let (_, again) = SimLogins::provision(dir.path(), &cfg).unwrap();
        assert_eq!(again, 0, "a second run finds every site covered");
    }

    #[test]
    fn a_device_without_credentials_connects_plainly() {
        let logins = SimLogins::default();
        let cfg = SimConfig::default();
        let login = logins.user_login(&id(&cfg, "SN1"), "SN1".into());
        assert_eq!(login.client_id, "SN1");
        assert_eq!(login.username, None);
        assert!(!format!("{login:?}").contains("secret"));
    }
}
