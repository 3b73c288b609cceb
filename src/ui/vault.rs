//! Where broker passwords of saved profiles live: the OS keyring (`keyring` crate: the kernel
//! keyutils store on Linux, Keychain / Credential Manager elsewhere) when it works, otherwise
//! this process's memory only, and the dialog says so. Owns nothing else. Must never write a
//! password to settings, logs or `Debug` output; keyring calls may block (D-Bus, kernel), so
//! the window calls them off its thread (see `connection_dialog`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::profiles::Secret;
use crate::i18n::tr;

/// The keyring "service" entries are filed under; the profile name is the "user".
pub const KEYRING_SERVICE: &str = "ota-console.broker-profile";

/// What happened to a password the operator asked to remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remembered {
    /// Stored in the OS keyring.
    Keyring,
    /// No keyring works here: kept in memory until the window closes.
    MemoryOnly { why: String },
}

impl Remembered {
    /// What the dialog says about it.
    pub fn message(&self) -> String {
        match self {
            Remembered::Keyring => tr!("ui.vault.saved"),
            Remembered::MemoryOnly { why } => tr!("ui.vault.memory_only", why = why),
        }
    }
}

/// Passwords by profile name. Cloneable; clones share the in-memory part.
#[derive(Clone, Default)]
pub struct Vault {
    /// This run's passwords (also the keyring's cache, so a connect needs no keyring call).
    memory: Arc<Mutex<HashMap<String, Secret>>>,
    /// Keyring entries already opened. Kept because the mock store used in tests keeps a
    /// password only in the entry object that set it.
    entries: Arc<Mutex<HashMap<String, Arc<keyring::Entry>>>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(<redacted>)")
    }
}

impl Vault {
    pub fn new() -> Vault {
        Vault::default()
    }

    fn entry(&self, profile: &str) -> Result<Arc<keyring::Entry>, keyring::Error> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get(profile) {
            return Ok(entry.clone());
        }
        let entry = Arc::new(keyring::Entry::new(KEYRING_SERVICE, profile)?);
        entries.insert(profile.to_owned(), entry.clone());
        Ok(entry)
    }

    /// Keeps `password` for `profile`: in the keyring when `remember` and one works, and in
    /// memory for this run in any case. May block on the keyring.
    pub fn store(&self, profile: &str, password: &Secret, remember: bool) -> Option<Remembered> {
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(profile.to_owned(), password.clone());
        if !remember {
            self.forget_in_keyring(profile);
            return None;
        }
        let saved = self
            .entry(profile)
            .and_then(|entry| entry.set_password(password.expose()));
        Some(match saved {
            Ok(()) => Remembered::Keyring,
            Err(e) => Remembered::MemoryOnly {
                why: keyring_error_text(&e),
            },
        })
    }

    /// The password for `profile`: this run's, else the keyring's (may block), else none.
    pub fn load(&self, profile: &str) -> Option<Secret> {
        if let Some(secret) = self
            .memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(profile)
        {
            return Some(secret.clone());
        }
        let password = self.entry(profile).ok()?.get_password().ok()?;
        let secret = Secret::new(password);
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(profile.to_owned(), secret.clone());
        Some(secret)
    }

    /// Drops the password of a deleted profile everywhere.
    pub fn forget(&self, profile: &str) {
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(profile);
        self.forget_in_keyring(profile);
    }

    fn forget_in_keyring(&self, profile: &str) {
        if let Ok(entry) = self.entry(profile) {
            // NoEntry is the usual answer; any other failure leaves nothing we could fix.
            let _ = entry.delete_credential();
        }
    }
}

/// The keyring's error as the dialog shows it (platform messages and names only: the crate's
/// errors never carry the secret).
fn keyring_error_text(e: &keyring::Error) -> String {
    e.to_string()
}

/// Tests use the keyring crate's in-memory mock store so that no test needs a keyring daemon
/// or the kernel keyring; call once before the first `Vault` use.
pub fn use_mock_keyring() {
    keyring::set_default_credential_builder(keyring::mock::default_credential_builder());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip_and_are_forgotten_without_showing_in_debug() {
        use_mock_keyring();
        let vault = Vault::new();
        let secret = Secret::new("s3cret-pw");
        assert_eq!(
            vault.store("plant", &secret, true),
            Some(Remembered::Keyring)
        );
        assert_eq!(vault.load("plant"), Some(secret.clone()));
        // A fresh in-memory side still finds it in the (mock) keyring.
        let other = Vault {
            memory: Arc::default(),
            entries: vault.entries.clone(),
        };
        assert_eq!(other.load("plant"), Some(secret.clone()));
        assert!(!format!("{vault:?} {secret:?}").contains("s3cret-pw"));
        vault.forget("plant");
        let fresh = Vault {
            memory: Arc::default(),
            entries: vault.entries.clone(),
        };
        assert_eq!(fresh.load("plant"), None);
        // Not remembered: this run only.
        assert_eq!(vault.store("lab", &secret, false), None);
        assert_eq!(vault.load("lab"), Some(secret));
    }

    #[test]
    fn memory_only_says_why() {
        let text = Remembered::MemoryOnly {
            why: "no kernel keyring".into(),
        }
        .message();
        assert!(
            text.starts_with("password not saved: no keyring available"),
            "{text}"
        );
    }
}
