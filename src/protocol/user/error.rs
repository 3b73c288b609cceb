//! Why a dialect file was refused: each error names the file, and where it can the line and
//! the field (`acme.toml:12: notice.payload: …`).

use crate::i18n::tr;

/// Why a dialect file could not be loaded or registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("{}", tr!("error.dialect_file.read", file = file, why = message))]
    Read { file: String, message: String },
    #[error("{file}:{line}: {field}: {message}")]
    Invalid {
        file: String,
        line: usize,
        field: String,
        message: String,
    },
    #[error("{file}: {message}")]
    Registry { file: String, message: String },
}

impl LoadError {
    /// The file the error is about.
    pub fn file(&self) -> &str {
        match self {
            LoadError::Read { file, .. }
            | LoadError::Invalid { file, .. }
            | LoadError::Registry { file, .. } => file,
        }
    }
}
