//! Small time helpers the units share: the wall clock in milliseconds (for `timestamp` fields
//! and signed logins) and optional timers for `select!` arms.

/// Milliseconds since the Unix epoch, for `timestamp` fields and signed logins.
pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Resolves once `timer` fires; never when there is none (for optional `select!` arms).
pub(crate) async fn fire(timer: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Resolves on the next tick of `interval`; never when there is none.
pub(crate) async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
