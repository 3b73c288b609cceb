//! One connection's topic decisions in secure mode, and the packets they rewrite.
//!
//! Owns: [`ClientAcl`] (the identity's publish and subscribe decisions through
//! [`crate::access::rules::Rules`], with a small per-connection cache of publish decisions so a
//! device publishing on its own topic costs one hash lookup per message), the QoS 2 publishes
//! the gate refused (their PUBREL is answered here), [`plan_subscribe`] (a SUBSCRIBE passed
//! whole, rewritten with its allowed filters, or answered by the gate), [`rewrite_suback`]
//! (0x80 at the refused positions of rumqttd's SUBACK) and the acknowledgements the gate writes
//! itself. Must never: let a refused filter reach rumqttd, or answer a SUBACK with a count of
//! return codes other than the client's count of filters.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{PubAck, PubComp, PubRec, SubAck, Subscribe, SubscribeReasonCode};

use super::connect::SecureAccess;
use crate::access::rules::{Decision, Identity};

/// Publish decisions cached per connection (a device uses a handful of topics).
const PUBLISH_CACHE: usize = 64;

/// QoS 2 publishes refused and not yet released, per connection (the client's in-flight window
/// bounds it in practice; this bounds it against a hostile client).
const MAX_REFUSED_QOS2: usize = 1024;

/// The decisions for one authenticated connection.
pub(super) struct ClientAcl {
    identity: Identity,
    access: Arc<SecureAccess>,
    generation: u64,
    /// Topic → `None` (allowed) or the reason of the refusal.
    publish_cache: HashMap<String, Option<String>>,
    refused_qos2: HashSet<u16>,
}

impl ClientAcl {
    pub(super) fn new(identity: Identity, access: Arc<SecureAccess>) -> ClientAcl {
        ClientAcl {
            generation: access.rules_generation(),
            identity,
            access,
            publish_cache: HashMap::new(),
            refused_qos2: HashSet::new(),
        }
    }

    /// `Err(reason)` when the client may not publish on `topic`.
    pub(super) fn publish(&mut self, topic: &str) -> Result<(), String> {
        let generation = self.access.rules_generation();
        if generation != self.generation {
            self.publish_cache.clear();
            self.generation = generation;
        }
        let verdict = match self.publish_cache.get(topic) {
            Some(cached) => cached.clone(),
            None => {
                let verdict = match self.access.may_publish(&self.identity, topic) {
                    Decision::Allow => None,
                    Decision::Deny(why) => Some(why.to_string()),
                };
                // Over-long topics are refused by the rules anyway; not worth keeping.
                if topic.len() <= crate::access::rules::MAX_TOPIC_BYTES {
                    if self.publish_cache.len() >= PUBLISH_CACHE {
                        self.publish_cache.clear();
                    }
                    self.publish_cache.insert(topic.to_owned(), verdict.clone());
                }
                verdict
            }
        };
        verdict.map_or(Ok(()), Err)
    }

    /// `Err(reason)` when the client may not subscribe to `filter`.
    pub(super) fn subscribe(&self, filter: &str) -> Result<(), String> {
        match self.access.may_subscribe(&self.identity, filter) {
            Decision::Allow => Ok(()),
            Decision::Deny(why) => Err(why.to_string()),
        }
    }

    /// Remembers a refused QoS 2 publish, whose PUBREL the gate answers. `false` when too many
    /// are outstanding (the client is then disconnected).
    pub(super) fn refused_qos2(&mut self, pkid: u16) -> bool {
        if self.refused_qos2.len() >= MAX_REFUSED_QOS2 {
            return false;
        }
        self.refused_qos2.insert(pkid);
        true
    }

    /// Whether a PUBREL of `pkid` releases a publish the gate refused (then forgotten).
    pub(super) fn release(&mut self, pkid: u16) -> bool {
        self.refused_qos2.remove(&pkid)
    }
}

/// What to do with a SUBSCRIBE.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SubscribePlan {
    /// Every filter allowed: forward the client's bytes.
    Forward,
    /// Some allowed: send this SUBSCRIBE instead, and rewrite the SUBACK with `allowed`.
    Rewrite {
        packet: BytesMut,
        allowed: Vec<bool>,
    },
    /// None allowed: answer this SUBACK, forward nothing.
    Answer { suback: BytesMut },
}

/// The plan for `subscribe` given the decision on each of its filters.
pub(super) fn plan_subscribe(subscribe: &Subscribe, allowed: Vec<bool>) -> SubscribePlan {
    if allowed.iter().all(|a| *a) {
        return SubscribePlan::Forward;
    }
    if !allowed.iter().any(|a| *a) {
        let suback = SubAck::new(
            subscribe.pkid,
            vec![SubscribeReasonCode::Failure; subscribe.filters.len()],
        );
        return SubscribePlan::Answer {
            suback: packet(|b| suback.write(b)),
        };
    }
    let kept = Subscribe {
        pkid: subscribe.pkid,
        filters: subscribe
            .filters
            .iter()
            .zip(&allowed)
            .filter(|(_, a)| **a)
            .map(|(f, _)| f.clone())
            .collect(),
    };
    SubscribePlan::Rewrite {
        packet: packet(|b| kept.write(b)),
        allowed,
    }
}

/// rumqttd's SUBACK for a rewritten SUBSCRIBE, with 0x80 put back at the refused positions.
pub(super) fn rewrite_suback(broker: &SubAck, allowed: &[bool]) -> BytesMut {
    let mut from_broker = broker.return_codes.iter();
    let codes = allowed
        .iter()
        .map(|a| match a {
            true => from_broker
                .next()
                .copied()
                .unwrap_or(SubscribeReasonCode::Failure),
            false => SubscribeReasonCode::Failure,
        })
        .collect();
    let suback = SubAck::new(broker.pkid, codes);
    packet(|b| suback.write(b))
}

pub(super) fn puback(pkid: u16) -> BytesMut {
    packet(|b| PubAck::new(pkid).write(b))
}

pub(super) fn pubrec(pkid: u16) -> BytesMut {
    packet(|b| PubRec::new(pkid).write(b))
}

pub(super) fn pubcomp(pkid: u16) -> BytesMut {
    packet(|b| PubComp::new(pkid).write(b))
}

/// Serializes one small packet. The writers of these packets fail only on lengths over
/// 256 MiB, impossible for acknowledgements and for SUBSCRIBEs already framed under the limit.
fn packet(
    write: impl FnOnce(&mut BytesMut) -> Result<usize, rumqttc::mqttbytes::Error>,
) -> BytesMut {
    let mut buffer = BytesMut::new();
    if write(&mut buffer).is_err() {
        buffer.clear();
    }
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::QoS;
    use rumqttc::mqttbytes::check;
    use rumqttc::mqttbytes::v4::SubscribeFilter;

    fn parse_suback(bytes: &BytesMut) -> SubAck {
        let header = check(bytes.iter(), 1 << 20).unwrap();
        SubAck::read(header, bytes.clone().freeze()).unwrap()
    }

    fn subscribe(filters: &[&str]) -> Subscribe {
        Subscribe {
            pkid: 9,
            filters: filters
                .iter()
                .map(|f| SubscribeFilter::new((*f).to_owned(), QoS::AtLeastOnce))
                .collect(),
        }
    }

    #[test]
    fn a_mixed_subscribe_is_rewritten_and_its_suback_restored() {
        let sub = subscribe(&["a", "#", "b", "c/+"]);
        let allowed = vec![true, false, true, false];
        let SubscribePlan::Rewrite { packet, allowed } = plan_subscribe(&sub, allowed) else {
            panic!("not rewritten");
        };
        let header = check(packet.iter(), 1 << 20).unwrap();
        let sent = Subscribe::read(header, packet.freeze()).unwrap();
        assert_eq!(sent.pkid, 9);
        let paths: Vec<_> = sent.filters.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a", "b"]);
        let broker = SubAck::new(
            9,
            vec![
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Success(QoS::AtMostOnce),
            ],
        );
        let back = parse_suback(&rewrite_suback(&broker, &allowed));
        assert_eq!(
            back.return_codes,
            [
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
                SubscribeReasonCode::Failure,
                SubscribeReasonCode::Success(QoS::AtMostOnce),
                SubscribeReasonCode::Failure,
            ]
        );
        // A short SUBACK from the broker still answers every filter.
        let short = SubAck::new(9, vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]);
        assert_eq!(
            parse_suback(&rewrite_suback(&short, &allowed))
                .return_codes
                .len(),
            4
        );
    }

    #[test]
    fn all_allowed_forwards_and_all_refused_is_answered_here() {
        let sub = subscribe(&["a", "b"]);
        assert_eq!(
            plan_subscribe(&sub, vec![true, true]),
            SubscribePlan::Forward
        );
        let SubscribePlan::Answer { suback } = plan_subscribe(&sub, vec![false, false]) else {
            panic!("not answered");
        };
        let ack = parse_suback(&suback);
        assert_eq!(ack.pkid, 9);
        assert_eq!(ack.return_codes, [SubscribeReasonCode::Failure; 2]);
    }

    #[test]
    fn acknowledgements_are_well_formed() {
        assert_eq!(&puback(0x0102)[..], [0x40, 2, 1, 2]);
        assert_eq!(&pubrec(7)[..], [0x50, 2, 0, 7]);
        assert_eq!(&pubcomp(7)[..], [0x70, 2, 0, 7]);
    }
}
