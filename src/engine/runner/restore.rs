//! Start-up from the database: the inventory, the package library, the campaign history, and
//! (when asked) the unfinished campaigns put back to work, each once its name is claimed. What cannot be read is told to the
//! operator and left out; the engine starts anyway.

use super::Runner;
use crate::engine::snapshot::AlertLevel;
use crate::i18n::tr;

impl Runner {
    /// Loads the inventory, the package library and the campaigns from the database.
    pub(in crate::engine) fn restore(&mut self, resume_unfinished: bool) {
        match self.store.load_inventory() {
            Ok(devices) => self.fleet.restore(devices),
            Err(e) => self.alert(AlertLevel::Error, tr!("engine.alert.no_inventory", why = e)),
        }
        if let Err(e) = self.library.restore(&self.store) {
            self.alert(AlertLevel::Error, tr!("engine.alert.no_packages", why = e));
        }
        self.io.tell_broker_gateways(&self.fleet);
        let unfinished = if resume_unfinished {
            self.store.unfinished_campaigns().unwrap_or_default()
        } else {
            Vec::new()
        };
        let now = self.clock.now();
        if let Err(e) = self.campaigns.restore_history(&self.store, now) {
            self.alert(AlertLevel::Error, tr!("engine.alert.no_campaigns", why = e));
        }
        // Each resumes once this console holds its name (the campaign lock): another console
        // may have taken it over while this one was down. A refusal is an alert.
        for id in unfinished {
            self.claim_and_resume(id, None);
        }
    }
}
