//! Folders and files that only their owner may read: the data folder and database (device
//! inventory, broker URLs of campaigns), and the window's settings file (saved broker profiles
//! with user names and TLS key paths). Folders get mode 0700 and files 0600, whatever the umask,
//! and files that already exist are tightened, so an install made before this rule is fixed on
//! the next start.
//!
//! Must never: loosen a mode, or touch anything but the paths it is given.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of a folder only its owner can list or enter.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of a file only its owner can read or write.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents, all 0700).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
}

/// Creates `dir` (and missing parents, all 0700) or tightens the existing `dir` itself to 0700.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    create_private_dir(dir)?;
    tighten(dir, PRIVATE_DIR_MODE)
}

/// Tightens an existing folder to 0700.
pub fn tighten_dir(dir: &Path) -> io::Result<()> {
    tighten(dir, PRIVATE_DIR_MODE)
}

/// Creates `file` with `initial` contents and mode 0600 if it does not exist; otherwise leaves
/// its contents alone and tightens it to 0600.
pub fn private_file(file: &Path, initial: &[u8]) -> io::Result<()> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(file)
    {
        Ok(mut created) => {
            created.write_all(initial)?;
            // The mode given at creation is filtered by the umask; say it again.
            tighten(file, PRIVATE_FILE_MODE)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => tighten(file, PRIVATE_FILE_MODE),
        Err(e) => Err(e),
    }
}

/// Tightens `file` to 0600 if it exists (SQLite's `-wal` and `-shm` files, which SQLite creates
/// itself).
pub fn tighten_if_present(file: &Path) -> io::Result<()> {
    match fs::metadata(file) {
        Ok(_) => tighten(file, PRIVATE_FILE_MODE),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes every permission bit outside `mode` (never adds one).
fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    let current = fs::metadata(path)?.permissions().mode() & 0o7777;
    let wanted = current & mode;
    if wanted != current {
        fs::set_permissions(path, fs::Permissions::from_mode(wanted))?;
    }
    Ok(())
}

/// Why [`read_bounded`] gave no contents.
#[derive(Debug)]
pub enum BoundedReadError {
    Io(io::Error),
    /// Larger than the limit asked for.
    TooLarge,
}

/// Reads a whole file of at most `max_bytes` (secrets, certificates: small files a stranger must
/// not make us load whole when they are not); `None` when it does not exist.
pub fn read_bounded(path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, BoundedReadError> {
    use std::io::Read;
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BoundedReadError::Io(e)),
    };
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(BoundedReadError::Io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(BoundedReadError::TooLarge);
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_folder_and_file_are_private_whatever_the_umask() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        let file = dir.join("settings.ron");
        private_file(&file, b"{}").unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(fs::read(&file).unwrap(), b"{}");
    }

    #[test]
    fn existing_ones_are_tightened_and_keep_their_contents() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.join("app.ron");
        fs::write(&file, b"(profiles: [])").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        private_dir(&dir).unwrap();
        private_file(&file, b"{}").unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(fs::read(&file).unwrap(), b"(profiles: [])");
    }

    #[test]
    fn tightening_never_adds_a_permission() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("db-wal");
        fs::write(&file, b"").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o400)).unwrap();
        tighten_if_present(&file).unwrap();
        assert_eq!(mode(&file), 0o400);
        tighten_if_present(&root.path().join("missing")).unwrap();
    }
}
