//! The campaign lock: which console drives a campaign when several consoles share one broker.
//! Pure: messages and time come in, what to publish and what was decided go out.
//!
//! # Why this protocol
//! MQTT 3.1.1 has no compare-and-set, but one broker handles the packets it receives one after
//! the other and forwards them to every subscriber in that order. So each console:
//! 1. subscribes to every console's lock topic ([`LOCK_FILTER`]) when it connects: the broker
//!    sends the retained claims of the consoles already there, before anything published later;
//! 2. publishes, retained (QoS 1), on its *own* topic ([`lock_topic`]) the list of campaigns it
//!    holds or claims ([`ClaimMessage`]: console id, host, user, pid, since, lease);
//! 3. decides when its own claim comes back: everything the broker handled before it has
//!    arrived by then, so if another console's latest word (its claim, not cleared since) names
//!    the campaign, that console was first: this one takes the campaign off its list and says
//!    who holds it ([`LockEvent::HeldBy`]); otherwise the campaign is its own.
//!
//! One topic per console (not one per campaign) because a retained slot keeps only the last
//! message: two consoles racing on one campaign topic would leave the loser's claim retained.
//! It also lets the broker clear every claim of a console that dies: its Will is an empty
//! retained message on its own topic ([`lock_topic`]). A Will can be lost (a broker restarted
//! without persistence keeps no Will, but then keeps no retained claim either); for the rest the
//! holder renews its claim every third of its lease, and a claim neither renewed within its
//! lease by the holder's clock (`renewed_at`) nor heard within it by ours is stale: ignored.
//!
//! "The same campaign" is the campaign's name (the key, `rollout --campaign`, default `FILE to
//! VERSION`): an operator who starts the same rollout on two consoles gives both the same name.
//! Per-device claims would stop overlapping campaigns of different names too, but would cost one
//! retained message per device (100,000 at fleet scale); the key is the middle way.
//!
//! Needs one broker (or a cluster that orders one subscriber's messages from all publishers as
//! it received them, which a single Mosquitto does); consoles' clocks within a lease of each
//! other (the wall-clock test only shortens the wait for a claim the Will did not clear).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every console's lock topic is under this namespace; devices may not publish there
/// (`access::rules` refuses topics outside every dialect's layout to all but the console).
pub const LOCK_TOPIC_PREFIX: &str = "ota-console/lock/";
/// What a console subscribes to so as to hear every console's claims.
pub const LOCK_FILTER: &str = "ota-console/lock/+";
/// Largest claim message read; a console holds a handful of campaigns.
pub const MAX_CLAIM_BYTES: usize = 64 * 1024;
/// How long a claim stays valid without being renewed (renewed every third of it).
pub const DEFAULT_LEASE_MS: u64 = 30_000;
/// Leases other consoles announce are taken within these bounds (a hostile or broken claim
/// cannot hold a campaign for ever).
const LEASE_BOUNDS_MS: (u64, u64) = (1_000, 600_000);
const FORMAT_VERSION: u32 = 1;

/// The lock topic of the console with MQTT client id `console`: one topic level, so characters
/// MQTT gives a meaning to in a topic are replaced.
pub fn lock_topic(console: &str) -> String {
    let level: String = console
        .chars()
        .map(|c| {
            if matches!(c, '/' | '+' | '#' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!("{LOCK_TOPIC_PREFIX}{level}")
}

/// Who a console is, as its claims tell the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleInfo {
    /// Its MQTT client id.
    pub console: String,
    pub host: String,
    pub user: String,
    pub pid: u32,
}

/// One campaign a console holds or claims, since when (its clock, ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldCampaign {
    pub key: String,
    pub since: u64,
}

/// The retained message on a console's lock topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimMessage {
    pub v: u32,
    #[serde(flatten)]
    pub who: ConsoleInfo,
    /// Tells this run's messages from a leftover of an earlier run under the same client id.
    pub instance: u64,
    /// Increases with every message of the run: an echo at or past a claim's `seq` carries it.
    pub seq: u64,
    pub renewed_at: u64,
    pub lease_ms: u64,
    pub campaigns: Vec<HeldCampaign>,
}

/// Who holds a campaign, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub console: ConsoleInfo,
    /// Since when it holds the campaign (its clock, ms since the epoch).
    pub since: u64,
}

/// What the lock decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockEvent {
    /// This console holds `key`: it may drive the campaign.
    Claimed { key: String },
    /// Another console holds `key`: this one must not drive it.
    HeldBy { key: String, holder: Holder },
}

/// What to do after one input: publish this (retained, on [`CampaignLocks::topic`]; empty =
/// clear the claim), and what was decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LockStep {
    pub publish: Option<Vec<u8>>,
    pub events: Vec<LockEvent>,
}

/// A claim waiting for its echo.
#[derive(Debug, Clone, Copy)]
struct Pending {
    since: u64,
    seq: u64,
}

/// Another console's last claim message and when we heard it.
#[derive(Debug, Clone)]
struct Seen {
    message: ClaimMessage,
    heard_at: u64,
}

impl Seen {
    fn lease(&self) -> u64 {
        self.message
            .lease_ms
            .clamp(LEASE_BOUNDS_MS.0, LEASE_BOUNDS_MS.1)
    }

    /// Renewed within its lease by its holder's clock, and heard within it by ours.
    fn is_live(&self, now: u64) -> bool {
        let lease = self.lease();
        now < self.message.renewed_at.saturating_add(lease)
            && now < self.heard_at.saturating_add(lease)
    }

    fn holds(&self, key: &str) -> Option<Holder> {
        self.message
            .campaigns
            .iter()
            .find(|c| c.key == key)
            .map(|c| Holder {
                console: self.message.who.clone(),
                since: c.since,
            })
    }
}

/// One console's view of the locks: what it holds, what it claims, and what the others hold.
#[derive(Debug)]
pub struct CampaignLocks {
    me: ConsoleInfo,
    instance: u64,
    lease_ms: u64,
    seq: u64,
    held: BTreeMap<String, u64>,
    pending: BTreeMap<String, Pending>,
    others: BTreeMap<String, Seen>,
    last_sent_at: Option<u64>,
    /// The last claim message we published listed something (so clearing it means something).
    listed: bool,
}

impl CampaignLocks {
    /// `instance`: a random number of this run (randomness comes in from the engine).
    pub fn new(me: ConsoleInfo, instance: u64, lease_ms: u64) -> CampaignLocks {
        CampaignLocks {
            me,
            instance,
            lease_ms: lease_ms.clamp(LEASE_BOUNDS_MS.0, LEASE_BOUNDS_MS.1),
            seq: 0,
            held: BTreeMap::new(),
            pending: BTreeMap::new(),
            others: BTreeMap::new(),
            last_sent_at: None,
            listed: false,
        }
    }

    /// This console's lock topic (also its Will's).
    pub fn topic(&self) -> String {
        lock_topic(&self.me.console)
    }

    pub fn is_held(&self, key: &str) -> bool {
        self.held.contains_key(key)
    }

    /// Asks for `key`. Decided at once when this console holds it already or another live
    /// claim lists it; otherwise the claim is published and decided by [`Self::on_message`].
    pub fn claim(&mut self, key: &str, now: u64) -> LockStep {
        let mut step = LockStep::default();
        if self.held.contains_key(key) {
            step.events.push(LockEvent::Claimed {
                key: key.to_owned(),
            });
            return step;
        }
        if self.pending.contains_key(key) {
            return step;
        }
        if let Some(holder) = self.live_holder(key, now) {
            step.events.push(LockEvent::HeldBy {
                key: key.to_owned(),
                holder,
            });
            return step;
        }
        let payload = self.next_message(now, Some(key));
        self.pending.insert(
            key.to_owned(),
            Pending {
                since: now,
                seq: self.seq,
            },
        );
        step.publish = Some(payload);
        step
    }

    /// Gives `key` up (its campaign finished or was canceled, or never started).
    pub fn release(&mut self, key: &str, now: u64) -> LockStep {
        let had = self.held.remove(key).is_some() | self.pending.remove(key).is_some();
        LockStep {
            publish: had.then(|| self.current(now)),
            events: Vec::new(),
        }
    }

    /// Gives everything up (the console stops): the message to publish, if one is needed.
    pub fn release_all(&mut self, now: u64) -> Option<Vec<u8>> {
        self.held.clear();
        self.pending.clear();
        self.listed.then(|| self.current(now))
    }

    /// A message on a lock topic (`topic` under [`LOCK_TOPIC_PREFIX`]). A malformed one is
    /// ignored: it can only come from a console (devices may not publish there), and a broken
    /// claim holding nothing is the safe reading... for everyone but its sender.
    pub fn on_message(&mut self, topic: &str, payload: &[u8], now: u64) -> LockStep {
        let mut step = LockStep::default();
        let Some(level) = topic.strip_prefix(LOCK_TOPIC_PREFIX) else {
            return step;
        };
        let mine = topic == self.topic();
        if payload.is_empty() {
            if mine {
                // Someone cleared our topic (a console that took our lease for stale): say
                // again what we hold.
                if !self.held.is_empty() || !self.pending.is_empty() {
                    step.publish = Some(self.next_message(now, None));
                }
            } else {
                self.others.remove(level);
            }
            return step;
        }
        let Some(message) = parse(payload) else {
            return step;
        };
        if mine {
            if message.instance == self.instance {
                self.on_echo(message.seq, now, &mut step);
            }
            // Else a leftover of an earlier run under our client id: our own claims replace it.
            return step;
        }
        // Another console's claim: kept as its latest word. Our claims are decided when our
        // echo comes, by what the others' latest words say then: a console whose claim the
        // broker handled before ours (and did not clear since) was first. Deciding then, not
        // on arrival, lets a claim followed by its clearing (queued for our session while we
        // were away, or a loser giving up) count as what it is: nothing.
        self.others.insert(
            level.to_owned(),
            Seen {
                message,
                heard_at: now,
            },
        );
        step
    }

    /// The link is back after an outage. While it was down the broker may have published our
    /// Will (clearing our claims) and another console may have taken a campaign over: each
    /// campaign we hold is claimed again, and is ours only if our echo comes before another
    /// console's claim (one already heard, live, means it was taken: [`LockEvent::HeldBy`]).
    pub fn reconnected(&mut self, now: u64) -> LockStep {
        let mut step = LockStep::default();
        if self.held.is_empty() {
            return step;
        }
        for (key, since) in std::mem::take(&mut self.held) {
            match self.live_holder(&key, now) {
                Some(holder) => step.events.push(LockEvent::HeldBy { key, holder }),
                None => {
                    self.pending.insert(
                        key,
                        Pending {
                            since,
                            seq: self.seq + 1,
                        },
                    );
                }
            }
        }
        step.publish = Some(self.next_message(now, None));
        step
    }

    /// Renews our claims when a third of the lease has passed since the last message.
    pub fn tick(&mut self, now: u64) -> LockStep {
        let due = self.next_renewal().is_some_and(|at| now >= at);
        LockStep {
            publish: due.then(|| self.next_message(now, None)),
            events: Vec::new(),
        }
    }

    /// When [`Self::tick`] next has something to do.
    pub fn next_renewal(&self) -> Option<u64> {
        if self.held.is_empty() && self.pending.is_empty() {
            return None;
        }
        Some(
            self.last_sent_at
                .unwrap_or(0)
                .saturating_add(self.lease_ms / 3),
        )
    }

    /// The live claim of another console on `key`, if any.
    pub fn live_holder(&self, key: &str, now: u64) -> Option<Holder> {
        self.others
            .values()
            .filter(|seen| seen.is_live(now))
            .find_map(|seen| seen.holds(key))
    }

    fn on_echo(&mut self, seq: u64, now: u64, step: &mut LockStep) {
        let echoed: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.seq <= seq)
            .map(|(key, _)| key.clone())
            .collect();
        let mut yielded = false;
        for key in echoed {
            let Some(pending) = self.pending.remove(&key) else {
                continue;
            };
            match self.live_holder(&key, now) {
                Some(holder) => {
                    yielded = true;
                    step.events.push(LockEvent::HeldBy { key, holder });
                }
                None => {
                    self.held.insert(key.clone(), pending.since);
                    step.events.push(LockEvent::Claimed { key });
                }
            }
        }
        if yielded {
            // Off our list, so that our retained claim does not name what another holds.
            step.publish = Some(self.current(now));
        }
    }

    /// Our message listing what we hold and claim (plus `claiming`), under a new `seq`.
    fn next_message(&mut self, now: u64, claiming: Option<&str>) -> Vec<u8> {
        self.seq += 1;
        self.last_sent_at = Some(now);
        let mut campaigns: Vec<HeldCampaign> = self
            .held
            .iter()
            .map(|(key, since)| (key, *since))
            .chain(self.pending.iter().map(|(key, p)| (key, p.since)))
            .map(|(key, since)| HeldCampaign {
                key: key.clone(),
                since,
            })
            .collect();
        if let Some(key) = claiming {
            campaigns.push(HeldCampaign {
                key: key.to_owned(),
                since: now,
            });
        }
        self.listed = !campaigns.is_empty();
        if !self.listed {
            return Vec::new();
        }
        let message = ClaimMessage {
            v: FORMAT_VERSION,
            who: self.me.clone(),
            instance: self.instance,
            seq: self.seq,
            renewed_at: now,
            lease_ms: self.lease_ms,
            campaigns,
        };
        serde_json::to_vec(&message).unwrap_or_default()
    }

    /// What we hold now, or the empty message that clears our topic when we hold nothing.
    fn current(&mut self, now: u64) -> Vec<u8> {
        self.next_message(now, None)
    }
}

/// A claim message, or `None` for anything else (too large, not JSON, another format).
pub fn parse(payload: &[u8]) -> Option<ClaimMessage> {
    if payload.len() > MAX_CLAIM_BYTES {
        return None;
    }
    serde_json::from_slice::<ClaimMessage>(payload)
        .ok()
        .filter(|m| m.v == FORMAT_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(id: &str) -> CampaignLocks {
        CampaignLocks::new(
            ConsoleInfo {
                console: id.to_owned(),
                host: format!("{id}-host"),
                user: "op".to_owned(),
                pid: 7,
            },
            u64::from(id.as_bytes()[0]),
            DEFAULT_LEASE_MS,
        )
    }

    /// One broker: delivers each published message to every console in the order it got them.
    fn deliver(
        consoles: &mut [&mut CampaignLocks],
        from: usize,
        payload: &[u8],
        now: u64,
    ) -> Vec<(usize, LockStep)> {
        let topic = consoles[from].topic();
        consoles
            .iter_mut()
            .enumerate()
            .map(|(i, c)| (i, c.on_message(&topic, payload, now)))
            .collect()
    }

    #[test]
    fn the_first_claim_the_broker_handles_wins_and_the_other_names_the_holder() {
        let mut a = console("a");
        let mut b = console("b");
        // Both claim before hearing anything; the broker takes a's claim first.
        let claim_a = a.claim("fw to 2.0", 1_000).publish.unwrap();
        let claim_b = b.claim("fw to 2.0", 1_000).publish.unwrap();
        let mut both = [&mut a, &mut b];
        let first = deliver(&mut both, 0, &claim_a, 1_010);
        assert_eq!(
            first[0].1.events,
            [LockEvent::Claimed {
                key: "fw to 2.0".into()
            }]
        );
        // b decides at its own echo, which comes after a's claim.
        assert_eq!(first[1].1, LockStep::default());
        let second = deliver(&mut both, 1, &claim_b, 1_020);
        assert_eq!(second[0].1, LockStep::default(), "a keeps the campaign");
        let LockEvent::HeldBy { holder, .. } = &second[1].1.events[0] else {
            panic!("{:?}", second[1].1.events);
        };
        assert_eq!(holder.console.console, "a");
        assert_eq!(holder.console.host, "a-host");
        assert_eq!(holder.since, 1_000);
        // b takes the campaign off its list: its topic is cleared.
        assert_eq!(second[1].1.publish.as_deref(), Some(&[][..]));
        assert!(a.is_held("fw to 2.0") && !b.is_held("fw to 2.0"));
        // A third console arriving later hears a's retained claim and does not even publish.
        let mut c = console("c");
        let retained = a.tick(11_000).publish.unwrap();
        c.on_message(&a.topic(), &retained, 11_005);
        let step = c.claim("fw to 2.0", 11_006);
        assert!(step.publish.is_none());
        assert!(
            matches!(&step.events[..], [LockEvent::HeldBy { holder, .. }] if holder.console.console == "a")
        );
    }

    #[test]
    fn a_cleared_or_stale_claim_can_be_taken_over() {
        let mut a = console("a");
        let mut b = console("b");
        let claim = a.claim("k", 0).publish.unwrap();
        a.on_message(&a.topic(), &claim, 5);
        b.on_message(&a.topic(), &claim, 5);
        assert!(b.live_holder("k", 10).is_some());
        // The holder dies: its Will, an empty retained message, clears its topic.
        b.on_message(&a.topic(), &[], 20);
        assert!(b.live_holder("k", 21).is_none());
        // Without the Will: stale one lease after it was last renewed and heard.
        b.on_message(&a.topic(), &claim, 30);
        assert!(b.live_holder("k", 30 + DEFAULT_LEASE_MS - 100).is_some());
        let late = 30 + DEFAULT_LEASE_MS;
        assert!(b.live_holder("k", late).is_none());
        let step = b.claim("k", late);
        assert!(step.publish.is_some() && step.events.is_empty());
        let echo = step.publish.unwrap();
        let step = b.on_message(&b.topic(), &echo, late + 3);
        assert_eq!(step.events, [LockEvent::Claimed { key: "k".into() }]);
    }

    #[test]
    fn the_holder_renews_every_third_of_its_lease_and_clears_its_topic_when_done() {
        let mut a = console("a");
        assert_eq!(a.next_renewal(), None);
        let claim = a.claim("k", 0).publish.unwrap();
        a.on_message(&a.topic(), &claim, 1);
        assert!(a.tick(DEFAULT_LEASE_MS / 3 - 1).publish.is_none());
        let renewal = a.tick(DEFAULT_LEASE_MS / 3).publish.unwrap();
        let renewed = parse(&renewal).unwrap();
        assert_eq!(renewed.renewed_at, DEFAULT_LEASE_MS / 3);
        assert_eq!(
            renewed.campaigns,
            [HeldCampaign {
                key: "k".into(),
                since: 0
            }]
        );
        assert_eq!(a.release("k", 20_000).publish.as_deref(), Some(&[][..]));
        assert_eq!(a.next_renewal(), None);
        assert_eq!(a.release_all(20_001), None);
    }

    #[test]
    fn after_an_outage_the_holder_claims_again_and_yields_to_a_console_that_took_over() {
        let mut a = console("a");
        let mut b = console("b");
        for key in ["kept", "taken"] {
            let claim = a.claim(key, 0).publish.unwrap();
            a.on_message(&a.topic(), &claim, 1);
        }
        // a is cut off; its Will clears its claims and b takes "taken" over.
        b.on_message(&a.topic(), &[], 40_000);
        let claim_b = b.claim("taken", 40_001).publish.unwrap();
        b.on_message(&b.topic(), &claim_b, 40_002);
        assert!(b.is_held("taken"));
        // Back: a claims both again; b's claim (retained, or queued for a's session) comes
        // before a's echo.
        let again = a.reconnected(50_000).publish.unwrap();
        assert!(!a.is_held("kept") && !a.is_held("taken"));
        assert_eq!(
            a.on_message(&b.topic(), &claim_b, 50_001),
            LockStep::default()
        );
        let step = a.on_message(&a.topic(), &again, 50_002);
        assert_eq!(step.events.len(), 2, "{:?}", step.events);
        assert!(
            step.events
                .contains(&LockEvent::Claimed { key: "kept".into() })
        );
        assert!(
            step.events
                .iter()
                .any(|e| matches!(e, LockEvent::HeldBy { key, holder }
            if key == "taken" && holder.console.console == "b"))
        );
        assert!(a.is_held("kept") && !a.is_held("taken"));
        // Heard before the link came back: taken at once.
        let mut c = console("c");
        let claim = c.claim("x", 0).publish.unwrap();
        c.on_message(&c.topic(), &claim, 1);
        c.on_message(&b.topic(), &b.claim("x", 2).publish.unwrap(), 3);
        let step = c.reconnected(4);
        assert!(matches!(&step.events[..], [LockEvent::HeldBy { key, .. }] if key == "x"));
        assert_eq!(step.publish.as_deref(), Some(&[][..]));
    }

    #[test]
    fn a_claim_cleared_before_our_echo_counts_for_nothing() {
        // What a console's session had queued while it was away: another's claim, then its
        // clearing (the campaign ended), then our own claim's echo.
        let mut a = console("a");
        let mut b = console("b");
        let claim_b = b.claim("k", 0).publish.unwrap();
        let mine = a.claim("k", 100).publish.unwrap();
        assert_eq!(a.on_message(&b.topic(), &claim_b, 101), LockStep::default());
        assert_eq!(a.on_message(&b.topic(), &[], 102), LockStep::default());
        let step = a.on_message(&a.topic(), &mine, 103);
        assert_eq!(step.events, [LockEvent::Claimed { key: "k".into() }]);
    }

    #[test]
    fn a_leftover_of_an_earlier_run_under_the_same_id_is_not_our_echo() {
        let mut before = console("a");
        let old = before.claim("k", 0).publish.unwrap();
        let mut now = CampaignLocks::new(before.me.clone(), 999, DEFAULT_LEASE_MS);
        now.on_message(&now.topic(), &old, 5);
        let step = now.claim("k", 6);
        assert!(step.publish.is_some());
        // The leftover comes again (a broker resending retained): still not an echo.
        assert!(now.on_message(&now.topic(), &old, 7).events.is_empty());
        assert!(!now.is_held("k"));
    }

    #[test]
    fn topics_are_one_level_and_garbage_is_ignored() {
        assert_eq!(lock_topic("a/b+c#"), "ota-console/lock/a_b_c_");
        let mut a = console("a");
        a.claim("k", 0);
        for junk in [&b"not json"[..], b"{}", &vec![b' '; MAX_CLAIM_BYTES + 1]] {
            let step = a.on_message("ota-console/lock/x", junk, 1);
            assert_eq!(step, LockStep::default());
        }
        assert_eq!(a.on_message("elsewhere/x", b"{}", 1), LockStep::default());
    }
}
