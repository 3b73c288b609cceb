//! The MXCHIP FogCloud topics for the broker's authorization (`access::rules`): which way each
//! flows and whose segments it carries.
//!
//! Decisions taken from fogcloud-ota.md: `thing/up/ota` up, `thing/down/ota` down. A gateway
//! speaks for its sub-devices with `sub.*` methods on its *own* topics, so it needs nothing
//! more.

use crate::access::rules::Part::{Key, Lit, Name};
use crate::access::rules::TopicRoute;

/// Every topic of the dialect.
pub const ROUTES: &[TopicRoute] = &[
    TopicRoute::up(&[
        Lit("fogcloud"),
        Key,
        Name,
        Lit("thing"),
        Lit("up"),
        Lit("ota"),
    ]),
    TopicRoute::down(&[
        Lit("fogcloud"),
        Key,
        Name,
        Lit("thing"),
        Lit("down"),
        Lit("ota"),
    ]),
];
