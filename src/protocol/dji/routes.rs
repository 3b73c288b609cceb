//! The DJI Cloud API topics for the broker's authorization (`access::rules`): which way each
//! flows and whose segments it carries.
//!
//! Decisions taken from dji-cloud-api-ota.md and notes.md: the dock is the only MQTT client of a
//! site. It publishes `sys/product/{sn}/status`, `thing/product/{sn}/state|osd|services_reply|
//! events` and subscribes to `thing/product/{sn}/services|events_reply` and
//! `sys/product/{sn}/status_reply`. Its drone never connects: the dock publishes the drone's
//! `state` and `osd` (its versions), so those two are `relayed` (a dock may publish them for a
//! drone the rules know to be its sub-device), and nothing else in the drone's name. Other DJI
//! Cloud API topics (`requests`, `property/set`, `drc/*`) are not in the OTA documents and are
//! refused.

use crate::access::rules::Part::{Lit, Name};
use crate::access::rules::TopicRoute;

/// Every topic of the dialect.
pub const ROUTES: &[TopicRoute] = &[
    TopicRoute::up(&[Lit("sys"), Lit("product"), Name, Lit("status")]),
    TopicRoute::relayed(&[Lit("thing"), Lit("product"), Name, Lit("state")]),
    TopicRoute::relayed(&[Lit("thing"), Lit("product"), Name, Lit("osd")]),
    TopicRoute::up(&[Lit("thing"), Lit("product"), Name, Lit("services_reply")]),
    TopicRoute::up(&[Lit("thing"), Lit("product"), Name, Lit("events")]),
    TopicRoute::down(&[Lit("sys"), Lit("product"), Name, Lit("status_reply")]),
    TopicRoute::down(&[Lit("thing"), Lit("product"), Name, Lit("services")]),
    TopicRoute::down(&[Lit("thing"), Lit("product"), Name, Lit("events_reply")]),
];
