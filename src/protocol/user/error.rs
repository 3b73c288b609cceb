//! Why a dialect file was refused: each error names the file, and where it can the line and
//! the field (`acme.toml:12: notice.payload: …`).

/// Why a dialect file could not be loaded or registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: cannot read: {message}")]
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
