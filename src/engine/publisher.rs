//! Publishing the engine's [`Snapshot`]: the `watch` the UI and the commands read, the waker a
//! GUI repaints on, whether anything changed since the last publish, and the log of which rows
//! changed at each of the last revisions.
//!
//! Rules it keeps: each published snapshot has a revision strictly greater than the one before
//! (the revision is given by this type, not by whoever builds the snapshot); the waker is called
//! after each publish, never before the new snapshot is readable; publishing clears the mark.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::handle::Waker;
use super::snapshot::{RowChangeLog, Snapshot};
use crate::device_id::DeviceId;

pub(super) struct Publisher {
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    waker: Arc<Mutex<Option<Waker>>>,
    /// Something shown changed since the last publish.
    dirty: bool,
    /// The revision of the last snapshot published.
    revision: u64,
    /// What changed at each of the last revisions (`Snapshot::row_changes`).
    row_changes: RowChangeLog,
}

impl Publisher {
    /// Starts dirty: the first turn publishes the engine's state.
    pub(super) fn new(
        snapshot_tx: watch::Sender<Arc<Snapshot>>,
        waker: Arc<Mutex<Option<Waker>>>,
    ) -> Publisher {
        Publisher {
            snapshot_tx,
            waker,
            dirty: true,
            revision: 0,
            row_changes: RowChangeLog::default(),
        }
    }

    /// Something the snapshot shows changed: publish at the next chance.
    pub(super) fn mark(&mut self) {
        self.dirty = true;
    }

    pub(super) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Publishes `snapshot` under the next revision (whatever it said), with the rows that
    /// changed since the last publish (`rows_changed`, `None`: any may have) added to its
    /// change log, then wakes the reader.
    pub(super) fn publish(
        &mut self,
        mut snapshot: Snapshot,
        rows_changed: Option<Arc<[DeviceId]>>,
    ) {
        self.revision += 1;
        snapshot.revision = self.revision;
        self.row_changes.record(self.revision, rows_changed);
        snapshot.row_changes = self.row_changes.clone();
        self.snapshot_tx.send_replace(Arc::new(snapshot));
        self.dirty = false;
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(wake) = waker {
            wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn revisions_increase_and_the_waker_sees_the_new_snapshot() {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::empty(String::new())));
        let seen = Arc::new(AtomicU64::new(0));
        let waker: Waker = {
            let (rx, seen) = (rx.clone(), seen.clone());
            Arc::new(move || seen.store(rx.borrow().revision, Ordering::SeqCst))
        };
        let mut publisher = Publisher::new(tx, Arc::new(Mutex::new(Some(waker))));
        assert!(publisher.is_dirty());
        let mut last = 0;
        for _ in 0..3 {
            // Whatever the builder says, the publisher numbers it.
            publisher.publish(Snapshot::empty(String::new()), None);
            let now = rx.borrow().revision;
            assert!(now > last);
            assert_eq!(seen.load(Ordering::SeqCst), now);
            assert!(!publisher.is_dirty());
            last = now;
        }
        publisher.mark();
        assert!(publisher.is_dirty());
    }
}
