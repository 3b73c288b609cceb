//! The operator's alerts: what went wrong (or right) that a person should read, newest last.
//!
//! Rules it keeps: at most [`MAX_ALERTS`] are held (the oldest goes first); every alert is also
//! written to the process log at its own level, except one whose caller is told by a reply
//! ([`Alerts::keep`]); any change is remembered until the snapshot is
//! rebuilt ([`Alerts::take_changed`]), so a component that raises an alert need not also know
//! about the snapshot.

use std::collections::VecDeque;

use super::snapshot::{Alert, AlertLevel};

/// Alerts kept for the UI.
const MAX_ALERTS: usize = 100;

#[derive(Debug, Default)]
pub(super) struct Alerts {
    list: VecDeque<Alert>,
    /// Pushed or cleared since the last [`Alerts::take_changed`].
    changed: bool,
}

impl Alerts {
    /// Logs `text` at `level` and keeps it for the operator.
    pub(super) fn push(&mut self, level: AlertLevel, text: String, now_ms: i64) {
        match level {
            AlertLevel::Error => tracing::error!("{text}"),
            AlertLevel::Warning => tracing::warn!("{text}"),
            AlertLevel::Info => tracing::info!("{text}"),
        }
        self.keep(level, text, now_ms);
    }

    /// Keeps `text` for the operator without logging it: the caller that asked for what
    /// failed is told by its reply and says it itself (the CLI prints it once, as `error:`).
    pub(super) fn keep(&mut self, level: AlertLevel, text: String, now_ms: i64) {
        if self.list.len() == MAX_ALERTS {
            self.list.pop_front();
        }
        self.list.push_back(Alert {
            at_ms: now_ms,
            level,
            text,
        });
        self.changed = true;
    }

    /// The operator dismissed them.
    pub(super) fn clear(&mut self) {
        self.list.clear();
        self.changed = true;
    }

    /// Whether they changed since the last call (the snapshot must show them).
    pub(super) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Oldest first, for the snapshot.
    pub(super) fn to_vec(&self) -> Vec<Alert> {
        self.list.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_alert_goes_when_the_list_is_full() {
        let mut alerts = Alerts::default();
        for i in 0..(MAX_ALERTS + 5) {
            alerts.push(AlertLevel::Info, format!("alert {i}"), i as i64);
        }
        let kept = alerts.to_vec();
        assert_eq!(kept.len(), MAX_ALERTS);
        assert_eq!(kept.first().map(|a| a.text.as_str()), Some("alert 5"));
        assert_eq!(
            kept.last().map(|a| a.text.as_str()),
            Some(format!("alert {}", MAX_ALERTS + 4).as_str())
        );
    }

    #[test]
    fn a_change_is_reported_once() {
        let mut alerts = Alerts::default();
        assert!(!alerts.take_changed());
        alerts.push(AlertLevel::Warning, "w".to_owned(), 1);
        assert!(alerts.take_changed());
        assert!(!alerts.take_changed());
        alerts.clear();
        assert!(alerts.take_changed());
        assert!(alerts.to_vec().is_empty());
    }
}
