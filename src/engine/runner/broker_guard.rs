//! What the embedded broker's gate refused, as the operator sees it: a login with no, wrong or
//! throttled credentials, a publish or subscribe outside the client's own topics, a Last Will
//! on a forbidden topic. Each refusal is counted, recorded in the inspector (topic or filter,
//! who tried, why) and logged as a warning — the first per source address and topic (for a
//! login: and user name) per minute, then a count (`traffic.rs`'s refusal log), so a client
//! guessing passwords cannot flood the log.

use super::Runner;
use crate::engine::snapshot::AlertLevel;
use crate::engine::traffic::LogDecision;
use crate::fleet::inspector::Direction;
use crate::i18n::tr;
use crate::transport::broker::{Attempt, BrokerEvent, BrokerRefusal};

impl Runner {
    pub(super) fn on_broker_event(&mut self, event: BrokerEvent) {
        match event {
            BrokerEvent::Refused(refusal) => self.on_broker_refusal(&refusal),
        }
    }

    fn on_broker_refusal(&mut self, refusal: &BrokerRefusal) {
        self.publisher.mark();
        let now_ms = self.clock.now_ms();
        // `what` keys the refusal log (English, like the log); the sentence names it in words.
        let (topic, what, attempt) = match &refusal.attempt {
            Attempt::Connect => ("(connect)".to_owned(), "login", tr!("engine.refused.login")),
            Attempt::Publish { topic } => (topic.clone(), "publish", tr!("engine.refused.publish")),
            Attempt::Subscribe { filter } => {
                (filter.clone(), "subscribe", tr!("engine.refused.subscribe"))
            }
            Attempt::Will { topic } => (topic.clone(), "last will", tr!("engine.refused.will")),
        };
        let who = describe_client(refusal);
        let reason = tr!(
            "engine.refused",
            what = attempt,
            who = who,
            why = refusal.reason
        );
        self.io.inspect(
            now_ms,
            Direction::In,
            &topic,
            b"",
            None,
            Some(reason.clone()),
        );
        // Per address and topic (a login: per address and user name); the log's own key limit
        // bounds what a client spraying names can make it hold.
        let key = match &refusal.attempt {
            Attempt::Connect => format!(
                "{} login {}",
                refusal.remote.ip(),
                refusal.username.as_deref().unwrap_or("(anonymous)")
            ),
            _ => format!("{} {}", refusal.remote.ip(), topic),
        };
        if let LogDecision::Log { suppressed } = self.traffic.broker_refused(&key, what, now_ms) {
            let more = if suppressed > 0 {
                tr!("engine.alert.more_like_it", count = suppressed)
            } else {
                String::new()
            };
            self.alert(AlertLevel::Warning, format!("{reason}{more}"));
        }
    }
}

/// "user \"x\" (client id \"y\") from 10.0.0.9:5123", with what is known.
fn describe_client(refusal: &BrokerRefusal) -> String {
    let who = match (&refusal.identity, &refusal.username) {
        (Some(identity), _) => identity.clone(),
        (None, Some(user)) => tr!("engine.client.user", user = format!("{user:?}")),
        (None, None) => tr!("engine.client.anonymous"),
    };
    let who = if refusal.client_id.is_empty() {
        who
    } else {
        tr!(
            "engine.client.with_id",
            who = who,
            id = format!("{:?}", refusal.client_id)
        )
    };
    tr!("engine.client.from", who = who, remote = refusal.remote)
}
