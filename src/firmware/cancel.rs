//! `CancelToken`: a cheap, cloneable flag that asks a long hashing/import job to stop.
//! It only carries the request; the job itself decides where it is safe to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared "please stop" flag. Clones observe the same flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not canceled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every job holding a clone of this token to stop at its next check.
    pub fn cancel(&self) {
        // Relaxed is enough: the flag guards no other data, it is only polled.
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether `cancel` was called on this token or any clone of it.
    pub fn is_canceled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let token = CancelToken::new();
        let clone = token.clone();
        assert!(!token.is_canceled());
        clone.cancel();
        assert!(token.is_canceled());
    }
}
