//! The console's MQTT identity: which client id the link connects with, and whether it may ask
//! the broker for a persistent session under it.
//!
//! Owns: the data directory's client id, generated once and kept in `<data dir>/mqtt-client-id`
//! (0600, like the rest of the folder), and the lock files (`<data dir>/mqtt-session-*.lock`)
//! that make sure one console at a time uses a session. The broker keeps a persistent session
//! per client id: the next console on the same data directory (a restart, `rollout --resume`)
//! picks up what devices reported meanwhile.
//!
//! Must never: let two running consoles share a persistent session. The broker disconnects one
//! each time the other connects, and each would take messages meant for the other. So:
//! - the data directory's own id goes to the first console that locks it; a second console on
//!   the same directory gets a random id with a clean session, and says so;
//! - an id that was asked for (`--client-id`, a saved window profile's) is refused while
//!   another console on this data directory holds it.
//!
//! The locks are advisory `flock`s, released by the kernel when the process dies (also by
//! `kill -9`), so a crash never leaves a session locked.

use crate::i18n::tr;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::private_fs;
use crate::transport::mqtt::generate_client_id;

/// The file in the data directory that holds its client id.
pub const CLIENT_ID_FILE: &str = "mqtt-client-id";
/// Longest client id read back from the file (brokers commonly allow 23 to 65535 bytes).
const MAX_STORED_ID_BYTES: usize = 256;

/// Why no client id could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum SessionIdError {
    #[error("{}", tr!("error.session.io", path = path.display(), why = crate::i18n::io_error(cause)))]
    Io { path: PathBuf, cause: io::Error },
    #[error("{}", tr!("error.session.in_use", id = format!("{id:?}"), dir = dir.display()))]
    InUse { id: String, dir: PathBuf },
}

/// The client id to connect with, and the lock that keeps it ours while this value lives.
#[derive(Debug)]
pub struct SessionClaim {
    pub client_id: String,
    /// `true` when another console holds the data directory's session: this one runs on a
    /// random id with a clean session (what devices report while it is down is not kept).
    pub clean_session: bool,
    /// A sentence for the operator when the console fell back to a clean session.
    pub warning: Option<String>,
    /// Held open (and locked) for as long as the session is ours.
    _lock: Option<File>,
}

impl SessionClaim {
    /// A random id with a clean session, and why.
    /// A clean session under a fresh id, asked for: nothing to warn about.
    pub(crate) fn transient() -> SessionClaim {
        SessionClaim {
            client_id: generate_client_id(),
            clean_session: true,
            warning: None,
            _lock: None,
        }
    }

    fn temporary(why: impl FnOnce(&str) -> String) -> SessionClaim {
        let client_id = generate_client_id();
        SessionClaim {
            warning: Some(why(&client_id)),
            client_id,
            clean_session: true,
            _lock: None,
        }
    }
}

/// Chooses the client id: `wanted` (an explicit or profile id) or the data directory's own, and
/// locks it against other consoles on `data_dir`. The data directory must exist. Refuses only an
/// id that was asked for and is in use; when the data directory cannot keep an id or a lock
/// (read-only, full), the console runs on a temporary clean session and says why: the rest of
/// the console works without a session, and the database or store reports its own trouble.
pub fn claim(data_dir: &Path, wanted: Option<&str>) -> Result<SessionClaim, SessionIdError> {
    match claim_inner(data_dir, wanted) {
        Err(SessionIdError::Io {
            path,
            cause: source,
        }) => Ok(SessionClaim::temporary(|temporary| {
            format!(
                "cannot keep the console's MQTT session in {}: {source}; this run connects \
                     as {temporary} with a clean session: what devices report while it is \
                     disconnected is not kept for it",
                path.display()
            )
        })),
        other => other,
    }
}

fn claim_inner(data_dir: &Path, wanted: Option<&str>) -> Result<SessionClaim, SessionIdError> {
    let (id, explicit) = match wanted {
        Some(id) => (id.to_owned(), true),
        None => (data_dir_client_id(data_dir)?, false),
    };
    let lock_path = data_dir.join(lock_file_name(&id));
    let io_error = |cause| SessionIdError::Io {
        path: lock_path.clone(),
        cause,
    };
    private_fs::private_file(&lock_path, b"").map_err(io_error)?;
    let file = File::open(&lock_path).map_err(io_error)?;
    match try_lock(&file) {
        Ok(()) => Ok(SessionClaim {
            client_id: id,
            clean_session: false,
            warning: None,
            _lock: Some(file),
        }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            if explicit {
                return Err(SessionIdError::InUse {
                    id,
                    dir: data_dir.to_owned(),
                });
            }
            Ok(SessionClaim::temporary(|temporary| {
                format!(
                    "another console on the data directory {} holds its MQTT session \
                     (client id {id}); this one connects as {temporary} with a clean session: \
                     what devices report while it is disconnected is not kept for it",
                    data_dir.display()
                )
            }))
        }
        // A file system without locks: nothing tells two consoles apart; keep the session.
        Err(e) => {
            tracing::debug!("cannot lock {}: {e}", lock_path.display());
            Ok(SessionClaim {
                client_id: id,
                clean_session: false,
                warning: None,
                _lock: None,
            })
        }
    }
}

/// The data directory's client id: read from [`CLIENT_ID_FILE`], or generated and stored there
/// the first time. Two consoles starting at once agree on one id (the file appears whole, by a
/// hard link, or not at all).
pub fn data_dir_client_id(data_dir: &Path) -> Result<String, SessionIdError> {
    let path = data_dir.join(CLIENT_ID_FILE);
    let io_error = |cause| SessionIdError::Io {
        path: path.clone(),
        cause,
    };
    match read_id(&path) {
        Ok(Some(id)) => return Ok(id),
        Ok(None) => {
            tracing::warn!(
                "{} does not hold a usable MQTT client id; a new one replaces it (the broker's \
                 session under the old one is not resumed)",
                path.display()
            );
            let id = generate_client_id();
            write_new(&path, &id, true).map_err(io_error)?;
            return Ok(id);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(e)),
    }
    let id = generate_client_id();
    match write_new(&path, &id, false) {
        Ok(()) => Ok(id),
        // Another console stored its id first: that one is the directory's.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_id(&path) {
            Ok(Some(id)) => Ok(id),
            Ok(None) => Err(io_error(io::Error::new(
                io::ErrorKind::InvalidData,
                "another console wrote an unusable client id",
            ))),
            Err(e) => Err(io_error(e)),
        },
        Err(e) => Err(io_error(e)),
    }
}

/// The id in `path`; `None` when the file holds no usable id (empty, binary, too long).
fn read_id(path: &Path) -> io::Result<Option<String>> {
    let bytes = fs::read(path)?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Ok(None);
    };
    let id = text.trim();
    let usable = !id.is_empty()
        && id.len() <= MAX_STORED_ID_BYTES
        && id.chars().all(|c| c.is_ascii_graphic());
    Ok(usable.then(|| id.to_owned()))
}

/// Writes `id` to a private temporary file, then links it in as `path` (failing with
/// `AlreadyExists` when `path` exists, unless `replace`).
fn write_new(path: &Path, id: &str, replace: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let temp = dir.join(format!(".{CLIENT_ID_FILE}.{:08x}", rand::random::<u32>()));
    private_fs::private_file(&temp, format!("{id}\n").as_bytes())?;
    let placed = if replace {
        fs::rename(&temp, path)
    } else {
        fs::hard_link(&temp, path)
    };
    // After a rename the temporary name is gone already.
    let _ = fs::remove_file(&temp);
    placed
}

/// The lock file of `id`: a digest, because a client id may hold any character.
fn lock_file_name(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("mqtt-session-{hex}.lock")
}

/// An exclusive advisory lock without waiting; `WouldBlock` when another process holds it.
fn try_lock(file: &File) -> io::Result<()> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_data_directory_keeps_its_id_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim(dir.path(), None).unwrap();
        assert!(!first.clean_session);
        assert!(first.warning.is_none());
        let id = first.client_id.clone();
        assert!(id.starts_with("ota-console-") && id.len() <= 23, "{id}");
        // The console stops (the claim is dropped) and starts again on the same directory.
        drop(first);
        let again = claim(dir.path(), None).unwrap();
        assert_eq!(again.client_id, id);
        assert!(!again.clean_session);
        let file = dir.path().join(CLIENT_ID_FILE);
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Another data directory has an id of its own.
        let other = tempfile::tempdir().unwrap();
        assert_ne!(claim(other.path(), None).unwrap().client_id, id);
    }

    #[test]
    fn a_second_console_on_the_directory_gets_a_clean_session_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim(dir.path(), None).unwrap();
        let second = claim(dir.path(), None).unwrap();
        assert_ne!(second.client_id, first.client_id);
        assert!(second.clean_session);
        let warning = second.warning.as_deref().unwrap();
        assert!(warning.contains(&first.client_id), "{warning}");
        // Once the first is gone, the directory's session is free again.
        drop(first);
        drop(second);
        let third = claim(dir.path(), None).unwrap();
        assert!(!third.clean_session);
    }

    #[test]
    fn an_id_asked_for_wins_and_is_refused_while_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let mine = claim(dir.path(), Some("plant-console")).unwrap();
        assert_eq!(mine.client_id, "plant-console");
        assert!(!mine.clean_session);
        let err = claim(dir.path(), Some("plant-console")).unwrap_err();
        assert!(matches!(err, SessionIdError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("--client-id"), "{err}");
        // The directory's own id is another session: not blocked by it.
        assert!(!claim(dir.path(), None).unwrap().clean_session);
    }

    #[test]
    fn a_data_directory_that_cannot_keep_an_id_gives_a_clean_session_and_says_why() {
        let root = tempfile::tempdir().unwrap();
        // A regular file where the folder should be: fails even for root.
        let dir = root.path().join("not-a-dir");
        fs::write(&dir, b"").unwrap();
        let claim = claim(&dir, None).unwrap();
        assert!(claim.clean_session);
        assert!(claim.client_id.starts_with("ota-console-"));
        let warning = claim.warning.unwrap();
        assert!(warning.contains("not-a-dir"), "{warning}");
    }

    #[test]
    fn an_unusable_id_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(CLIENT_ID_FILE);
        fs::write(&file, b"\xff\xfe not text").unwrap();
        let id = data_dir_client_id(dir.path()).unwrap();
        assert!(id.starts_with("ota-console-"), "{id}");
        assert_eq!(data_dir_client_id(dir.path()).unwrap(), id);
        fs::write(&file, b"  kept-id \n").unwrap();
        assert_eq!(data_dir_client_id(dir.path()).unwrap(), "kept-id");
    }
}
