//! Giving a fleet's units the credentials they need on a secured broker
//! (`ota-console sim --provision DIR`): each unit's factory says what it needs
//! ([`Credential`]); missing secrets and users are added to the data directory's files.

use std::path::Path;

use super::credentials::{SimLoginError, SimLogins, random_hex, user_name_for};
use super::unit::{Credential, SimConfig};
use crate::access::credentials::UserTable;
use crate::device_id::DeviceId;

impl SimLogins {
    /// Gives every connecting unit of `cfg` that has no credentials in `data_dir` fresh ones (a
    /// secret, or a user naming the devices the unit speaks for, as its factory's
    /// [`super::SimFactory::credential`] says), writes them to the files, and returns the
    /// credentials with how many were added. With [`SimConfig::per_connection`] above 1, each
    /// shared connection gets one site user naming every device on it instead (units with a
    /// secret still get one each: they sign their own logins).
    pub fn provision(
        data_dir: &Path,
        cfg: &SimConfig,
    ) -> Result<(SimLogins, usize), SimLoginError> {
        let mut logins = SimLogins::load(data_dir)?;
        let mut added = 0;
        let mut secrets_changed = false;
        // Per entry of the fleet, each unit with the devices it speaks for, grouped as the
        // fleet shares connections.
        let mut users_per_entry = Vec::new();
        for unit in &cfg.units {
            let mut users = Vec::new();
            for i in 0..unit.count {
                match unit.factory.credential(unit, cfg, i)? {
                    Credential::Secret { product_key, name } => {
                        if logins.secrets.secret(&product_key, &name).is_none() {
                            logins
                                .secrets
                                .insert(&product_key, &name, &random_hex(16))?;
                            secrets_changed = true;
                            added += 1;
                        }
                    }
                    Credential::User(devices) => users.push(devices),
                }
            }
            users_per_entry.push(users);
        }
        if secrets_changed {
            logins.secrets.save(data_dir)?;
        }
        for units in users_per_entry {
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
}
